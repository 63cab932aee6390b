"""What a job shows the world names images by id and thumbnail URL, never by server path."""

from __future__ import annotations

import json
from pathlib import Path

from app.service.redaction import Publisher
from app.service.store import Store


def test_publisher_replaces_paths_with_image_ids_and_thumbnails(tmp_path: Path) -> None:
    pid, iid = "a" * 32, "b" * 32
    path = f"{tmp_path}/projects/{pid}/images/{iid}.jpg"
    publisher = Publisher(Store(tmp_path), pid)
    metrics = {
        "misclassified": [{"path": path, "true": "red", "predicted": "blue", "probability": 0.9}],
        "skipped": [{"path": path, "reason": "It is not an image."}],
        "images": [path],
        "zip": f"{tmp_path}/projects/{pid}/models/x/transfer.zip",
        "message": f"Could not read {path} or {tmp_path}/other.",
    }
    public = publisher.data(metrics)
    thumbnail = f"/api/projects/{pid}/images/{iid}/thumbnail"
    assert public["misclassified"] == [
        {
            "image_id": iid,
            "thumbnail_url": thumbnail,
            "true": "red",
            "predicted": "blue",
            "probability": 0.9,
        }
    ]
    assert public["skipped"] == [
        {"image_id": iid, "thumbnail_url": thumbnail, "reason": "It is not an image."}
    ]
    assert public["images"] == [iid] and public["zip"] == "transfer.zip"
    assert public["message"] == f"Could not read {iid} or [data]/other."
    assert str(tmp_path) not in json.dumps(public)
