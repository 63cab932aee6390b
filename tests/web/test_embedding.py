"""Background embedding: uploads are embedded as they arrive, so Train only trains the head."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from fastapi.testclient import TestClient

from app.engine.embeddings import EmbeddingCache
from tests.web.api_helpers import (
    BLUE,
    RED,
    create_class,
    create_project,
    image_bytes,
    read_events,
    upload,
)


def test_uploads_are_embedded_in_the_background(make_client: Callable[..., TestClient]) -> None:
    client = make_client(embed_on_upload=True)
    settings = client.app.state.settings
    pid = create_project(client)
    for index, (name, colour) in enumerate((("red", RED), ("blue", BLUE))):
        cid = create_class(client, pid, name)
        files = [(f"{i}.jpg", image_bytes(colour, seed=5000 + index * 100 + i)) for i in range(4)]
        assert len(upload(client, pid, cid, files).json()["added"]) == 4

    deadline = time.monotonic() + 120
    while (
        client.get(f"/api/projects/{pid}").json()["pending_embeddings"]
        and time.monotonic() < deadline
    ):
        time.sleep(0.1)
    assert client.get(f"/api/projects/{pid}").json()["pending_embeddings"] == 0
    cache = EmbeddingCache(settings.resolved_cache_dir() / "embeddings.sqlite")
    keys = [
        EmbeddingCache.key("mobilenet_v2", image.sha256)
        for image in client.app.state.store.list_images(pid)
    ]
    assert set(cache.get_many(keys)) == set(keys)

    jid = client.post(f"/api/projects/{pid}/jobs", json={"mode": "transfer", "epochs": 2}).json()[
        "id"
    ]
    events = [json.loads(e["data"]) for e in read_events(client, jid) if "event" in e]
    embed_progress = [e for e in events if e["type"] == "progress" and e["stage"] == "embed"]
    assert embed_progress and all(e["total"] == 0 for e in embed_progress)
    assert events[-1]["type"] == "done"
