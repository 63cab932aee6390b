"""Request, file, count and pixel limits: 413 (or a per-file rejection) with a sentence, nothing half-stored."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from tests.web.api_helpers import create_class, create_project, image_bytes, upload


def noise_png(side: int) -> bytes:
    """A PNG that does not compress: `side`x`side` random pixels, about 3*side^2 bytes."""
    pixels = np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, "PNG")
    return buffer.getvalue()


def multipart(
    files: list[tuple[str, bytes]], boundary: str = "teachboxboundary"
) -> tuple[bytes, str]:
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\nContent-Type: image/png\r\n\r\n'.encode()
        + data
        + b"\r\n"
        for name, data in files
    ]
    return b"".join(
        parts
    ) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def chunks(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _stored_files(client: TestClient) -> list[str]:
    root = client.app.state.settings.data_dir / "projects"
    return sorted(str(p) for p in root.rglob("*") if p.is_file())


def test_declared_body_over_the_limit_is_413(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_request_mb=0.5)
    pid = create_project(client)
    cid = create_class(client, pid, "cat")
    response = upload(client, pid, cid, [("big.png", noise_png(500))])
    assert response.status_code == 413
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.json() == {
        "detail": "The request is larger than the limit of 0.5 MB. Send fewer or smaller files at a time."
    }
    assert _stored_files(client) == []


def test_streamed_body_over_the_limit_is_413_without_content_length(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(max_request_mb=1)
    pid = create_project(client)
    cid = create_class(client, pid, "cat")
    body, content_type = multipart([(f"{i}.png", noise_png(300)) for i in range(5)])
    assert len(body) > 1_000_000
    response = client.post(
        f"/api/projects/{pid}/classes/{cid}/images",
        content=chunks(body),
        headers={"content-type": content_type},
    )
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert (
        response.json()["detail"]
        == "The request is larger than the limit of 1 MB. Send fewer or smaller files at a time."
    )
    assert _stored_files(client) == []
    assert client.get(f"/api/projects/{pid}/classes/{cid}/images").json() == []


def test_streamed_json_over_the_limit_is_413_too(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_request_mb=1)
    body = b'{"name": "' + b"x" * 1_200_000 + b'"}'
    response = client.post(
        "/api/projects", content=chunks(body), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert client.get("/api/projects").json() == []


def test_a_lone_file_over_the_per_file_limit_is_413(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_file_mb=0.1)
    pid = create_project(client)
    cid = create_class(client, pid, "cat")
    response = upload(client, pid, cid, [("big.png", noise_png(300))])
    assert response.status_code == 413
    assert response.json()["detail"].startswith(
        "The file is 0.271 MB, over the limit of 0.1 MB per file."
    )


def test_a_big_file_in_a_mixed_upload_is_rejected_alone(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(max_file_mb=0.1)
    pid = create_project(client)
    cid = create_class(client, pid, "cat")
    response = upload(client, pid, cid, [("big.png", noise_png(300)), ("small.jpg", image_bytes())])
    assert response.status_code == 200
    assert [item["filename"] for item in response.json()["added"]] == ["small.jpg"]
    [rejected] = response.json()["rejected"]
    assert (
        rejected["filename"] == "big.png"
        and "over the limit of 0.1 MB per file" in rejected["reason"]
    )


def test_too_many_files_in_one_request_is_413(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_files_per_request=3)
    pid = create_project(client)
    cid = create_class(client, pid, "cat")
    assert (
        upload(client, pid, cid, [(f"{i}.jpg", image_bytes(seed=i)) for i in range(3)]).status_code
        == 200
    )
    response = upload(client, pid, cid, [(f"{i}.jpg", image_bytes(seed=i)) for i in range(4)])
    assert response.status_code == 413
    assert response.json() == {
        "detail": "At most 3 files can be sent in one request. Send them in smaller batches."
    }
    assert len(client.get(f"/api/projects/{pid}/classes/{cid}/images").json()) == 3


def test_the_pixel_cap_rejects_before_decoding(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_pixels=10_000)
    pid = create_project(client)
    cid = create_class(client, pid, "cat")
    response = upload(
        client,
        pid,
        cid,
        [("large.jpg", image_bytes(size=(200, 100))), ("ok.jpg", image_bytes(size=(90, 100)))],
    )
    assert [item["filename"] for item in response.json()["added"]] == ["ok.jpg"]
    assert "over the limit of 0.01 megapixels" in response.json()["rejected"][0]["reason"]


def test_a_disk_error_leaves_no_partial_file(client: TestClient, monkeypatch) -> None:
    """A full disk (ENOSPC from the write) answers 507 and leaves nothing behind."""
    import errno

    pid = create_project(client)
    cid = create_class(client, pid, "cat")
    real_fsync = os.fsync

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    response = upload(client, pid, cid, [("a.jpg", image_bytes())])
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert response.status_code == 507
    assert response.json() == {
        "detail": "The server's disk is full. Free some space or delete old projects, then try again."
    }
    assert _stored_files(client) == []
    assert client.get(f"/api/projects/{pid}/classes/{cid}/images").json() == []
