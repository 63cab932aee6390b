"""Issue 6, cases 1-7: hostile requests and uploads get a clear 4xx, and nothing stored is lost.

Each test is named after its case. Spooled upload files are unnamed temporary files; whether any
is left open is read from /proc/<pid>/fd, where such a file shows as "... (deleted)".
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.web.api_helpers import (
    ServerProcess,
    create_class,
    create_project,
    files_under,
    image_bytes,
    make_trainable,
    unnamed_open_files,
    upload,
)

BOUNDARY = "teachboxboundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def noise_png(side: int) -> bytes:
    """A PNG that does not compress: about 3*side^2 bytes."""
    pixels = np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, "PNG")
    return buffer.getvalue()


def part(data: bytes, disposition: bytes = b'filename="a.jpg"', headers: bytes = b"") -> bytes:
    return (
        f"--{BOUNDARY}\r\n".encode()
        + b'Content-Disposition: form-data; name="files"; '
        + disposition
        + b"\r\n"
        + headers
        + b"Content-Type: image/jpeg\r\n\r\n"
        + data
        + b"\r\n"
    )


def closing() -> bytes:
    return f"--{BOUNDARY}--\r\n".encode()


def chunks(data: bytes, size: int = 256 * 1024) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.fixture
def target(client: TestClient) -> tuple[str, str, str]:
    """A project with one stored image, and the upload URL of its class."""
    pid = create_project(client)
    cid = create_class(client, pid, "cat")
    assert upload(client, pid, cid, [("kept.jpg", image_bytes(seed=42))]).status_code == 200
    return pid, cid, f"/api/projects/{pid}/classes/{cid}/images"


def _stored(client: TestClient) -> dict[str, bytes]:
    return files_under(client.app.state.settings.data_dir)


# 1. A body over the request limit -> 413, with or without Content-Length; temporary files removed.
# A real server: the in-process client hands the app a whole body at once, so nothing would spool.


def _post_raw(server: ServerProcess, path: str, headers: str, body: Iterator[bytes]) -> bytes:
    """Send a request over a raw socket, as far as the server reads it, and return its reply."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode())
        with contextlib.suppress(OSError):  # the server may answer and close before the end
            for piece in body:
                sock.sendall(piece)
        return _read_reply(sock)


def _status_and_detail(reply: bytes) -> tuple[int, str]:
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)["detail"]


def _chunked(data: bytes, spooled: Callable[[], None]) -> Iterator[bytes]:
    """HTTP/1.1 chunked encoding (no Content-Length); halfway, `spooled` is called."""
    for index, piece in enumerate(chunks(data, 64 * 1024)):
        if index == 32:
            spooled()
        yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    yield b"0\r\n\r\n"


def test_case_01_a_body_over_the_request_limit_is_413_and_its_spool_is_removed(
    start_server: Callable[[], ServerProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEACHBOX_MAX_REQUEST_MB", "3")
    server = start_server()
    pid, classes = make_trainable(server.client, per_class=1)
    path = f"/api/projects/{pid}/classes/{classes['red']}/images"
    before = files_under(server.data_dir)
    body = part(os.urandom(4_000_000)) + closing()
    refusal = (
        413,
        "The request is larger than the limit of 3 MB. Send fewer or smaller files at a time.",
    )

    declared = _post_raw(
        server, path, f"Content-Type: {MULTIPART}\r\nContent-Length: {len(body)}\r\n", iter([body])
    )
    assert _status_and_detail(declared) == refusal

    seen: list[set[str]] = []

    def spooled() -> None:  # 2 MB sent: wait until the server has spooled the file part to disk
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            if found := unnamed_open_files(server.process.pid):
                seen.append(found)
            time.sleep(0.05)

    streamed = _post_raw(
        server,
        path,
        f"Content-Type: {MULTIPART}\r\nTransfer-Encoding: chunked\r\n",
        _chunked(body, spooled),
    )
    assert _status_and_detail(streamed) == refusal
    assert seen, "the upload was never spooled to a temporary file"
    assert unnamed_open_files(server.process.pid) == set()
    assert files_under(server.data_dir) == before
    assert server.client.get("/api/health").status_code == 200


# 2. A single file over the per-file limit -> 413, or a rejection with that reason in a mixed upload.


def test_case_02_a_file_over_the_per_file_limit_is_413_alone_and_rejected_in_a_mix(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(max_file_mb=0.1)
    pid = create_project(client)
    cid = create_class(client, pid, "cat")
    big = noise_png(300)
    alone = upload(client, pid, cid, [("big.png", big)])
    assert alone.status_code == 413
    assert alone.json() == {
        "detail": "The file is 0.271 MB, over the limit of 0.1 MB per file. Downscale it and upload it again."
    }
    mixed = upload(client, pid, cid, [("big.png", big), ("small.jpg", image_bytes())])
    assert mixed.status_code == 200
    assert [item["filename"] for item in mixed.json()["added"]] == ["small.jpg"]
    assert mixed.json()["rejected"] == [
        {
            "filename": "big.png",
            "reason": "The file is 0.271 MB, over the limit of 0.1 MB per file. Downscale it and upload it again.",
        }
    ]
    assert [i["filename"] for i in client.get(f"/api/projects/{pid}/images").json()] == [
        "small.jpg"
    ]


# 3. More files than allowed in one request -> 413.


def test_case_03_more_files_than_allowed_is_413_and_stores_none_of_them(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(max_files_per_request=3)
    pid = create_project(client)
    cid = create_class(client, pid, "cat")
    upload(client, pid, cid, [("kept.jpg", image_bytes(seed=42))])
    before, open_before = _stored(client), unnamed_open_files()
    response = upload(client, pid, cid, [(f"{i}.jpg", image_bytes(seed=i)) for i in range(4)])
    assert response.status_code == 413
    assert response.json() == {
        "detail": "At most 3 files can be sent in one request. Send them in smaller batches."
    }
    assert _stored(client) == before
    assert unnamed_open_files() - open_before == set()


# 4. Malformed multipart (no boundary, huge part headers, megabytes of preamble) -> 400, server healthy.

MALFORMED = {
    "no boundary": (
        "multipart/form-data",
        part(image_bytes()) + closing(),
        "The multipart body could not be read (Missing boundary in multipart.). Send the files as multipart/form-data.",
    ),
    "huge part header": (
        MULTIPART,
        part(image_bytes(), headers=b"X-Junk: " + b"a" * 2_000_000 + b"\r\n") + closing(),
        "The multipart body could not be read (Maximum header size exceeded). Send the files as multipart/form-data.",
    ),
    "huge filename": (
        MULTIPART,
        part(image_bytes(), disposition=b'filename="' + b"a" * 2_000_000 + b'.jpg"') + closing(),
        "The multipart body could not be read (Maximum header size exceeded). Send the files as multipart/form-data.",
    ),
    "thousands of part headers": (
        MULTIPART,
        part(image_bytes(), headers=b"".join(b"X-%d: 1\r\n" % i for i in range(10_000)))
        + closing(),
        "The multipart body could not be read (Maximum header count exceeded). Send the files as multipart/form-data.",
    ),
    "megabytes of text preamble": (
        MULTIPART,
        b"This is a preamble. " * 250_000 + b"\r\n" + part(image_bytes()) + closing(),
        "The multipart body has more than 16 KB before its first part. Send the files as multipart/form-data without a preamble.",
    ),
    "megabytes of blank-line preamble": (
        MULTIPART,
        b"\r\n" * 2_500_000 + part(image_bytes()) + closing(),
        "The multipart body has more than 16 KB before its first part. Send the files as multipart/form-data without a preamble.",
    ),
    "no closing boundary": (
        MULTIPART,
        part(image_bytes()),
        "The multipart body could not be read (it ends before its closing boundary). Send the files as multipart/form-data.",
    ),
    "wrong boundary": (
        "multipart/form-data; boundary=other",
        part(image_bytes()) + closing(),
        "The multipart body could not be read (Expected boundary character 111, got 116 at index 4). Send the files as multipart/form-data.",
    ),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_case_04_malformed_multipart_is_400_and_the_server_stays_healthy(
    client: TestClient, target: tuple[str, str, str], case: str
) -> None:
    content_type, body, sentence = MALFORMED[case]
    _, _, url = target
    before, open_before = _stored(client), unnamed_open_files()
    response = client.post(url, content=body, headers={"content-type": content_type})
    assert response.status_code == 400
    assert response.json() == {"detail": sentence}
    assert _stored(client) == before
    assert unnamed_open_files() - open_before == set()
    assert client.get("/api/health").json() == {"status": "ok"}
    good = client.post(
        url, content=part(image_bytes(seed=7)) + closing(), headers={"content-type": MULTIPART}
    )
    assert good.status_code == 200 and len(good.json()["added"]) == 1


# 5. A client that uploads one byte a second -> cut off by a timeout, partial file removed.


def _read_reply(sock: socket.socket) -> bytes:
    reply = b""
    while not reply.endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        reply += chunk
    return reply


def test_case_05_a_client_that_drips_bytes_is_cut_off_and_its_spool_removed(
    start_server: Callable[[], ServerProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    """1.5 MB arrive at once (spooled to disk), then a byte every 0.2 s: never a stall, always too slow."""
    monkeypatch.setenv("TEACHBOX_UPLOAD_TIMEOUT_S", "1")
    monkeypatch.setenv("TEACHBOX_UPLOAD_MIN_KB_S", "64")
    server = start_server()
    pid, classes = make_trainable(server.client, per_class=1)
    before = files_under(server.data_dir)
    head = (
        f"POST /api/projects/{pid}/classes/{classes['red']}/images HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: {MULTIPART}\r\nContent-Length: 3000000\r\n\r\n"
    ).encode() + part(b"")[: -len(b"\r\n")]
    spooled: set[str] = set()
    with socket.create_connection(("127.0.0.1", server.port), timeout=0.2) as sock:
        sock.sendall(head + os.urandom(1_500_000))
        reply, deadline = b"", time.monotonic() + 60
        while b"\r\n\r\n" not in reply and time.monotonic() < deadline:
            spooled |= unnamed_open_files(server.process.pid)
            try:
                sock.sendall(b"x")
                reply += sock.recv(65536)
            except TimeoutError:
                continue
        sock.settimeout(10)
        reply += _read_reply(sock)
    status, detail = _status_and_detail(reply)
    assert status == 408
    assert detail.startswith("The upload arrived at ")
    assert detail.endswith(
        "KB/s for 1 seconds, slower than the minimum of 64 KB/s, so the server stopped waiting. "
        "Check the connection and send it again."
    )
    assert spooled, "the upload was never spooled to a temporary file"
    assert unnamed_open_files(server.process.pid) == set()
    assert files_under(server.data_dir) == before
    assert server.client.get("/api/health").status_code == 200
    assert len(server.client.get(f"/api/projects/{pid}/images").json()) == 2


# 6. Hostile filenames -> stored under a server name; nothing written outside the data dir.

HOSTILE_NAMES = {
    b'filename="../../escape.jpg"': "escape.jpg",
    b'filename="/etc/passwd.jpg"': "passwd.jpg",
    b'filename="..\\..\\win.jpg"': "win.jpg",
    b'filename="C:\\\\Windows\\\\drive.jpg"': "drive.jpg",
    b'filename="nul\x00byte.jpg"': "nulbyte.jpg",
    b'filename="' + b"x" * 300 + b'.jpg"': "x" * 200,
    'filename="\u202egpj.exe"'.encode(): "gpj.exe",
    'filename="a\u200f\u061cb.jpg"'.encode(): "ab.jpg",
    b'filename="%2e%2e%2fpct.jpg"': "%2e%2e%2fpct.jpg",
    b'filename=".."': "..",
    b'filename=""': "image",
}


def test_case_06_hostile_filenames_are_stored_under_server_names(
    client: TestClient, target: tuple[str, str, str], tmp_path: Path
) -> None:
    pid, _, url = target
    data_dir = client.app.state.settings.data_dir
    outside = {p for p in tmp_path.rglob("*") if data_dir not in p.parents}
    root_files = set(Path.cwd().iterdir())
    added = []
    for index, (disposition, shown) in enumerate(HOSTILE_NAMES.items()):
        body = part(image_bytes(seed=index), disposition=disposition) + closing()
        response = client.post(url, content=body, headers={"content-type": MULTIPART})
        assert response.status_code == 200, response.text
        [item] = response.json()["added"]
        assert item["filename"] == shown
        added.append(item["id"])
    store = client.app.state.store
    for image_id in added:
        image = store.get_image(pid, image_id)
        assert image is not None and image.stored_name == f"{image_id}.jpg"
        assert store.image_path(image).parent == data_dir / "projects" / pid / "images"
        assert store.image_path(image).is_file()
    assert {p for p in tmp_path.rglob("*") if data_dir not in p.parents} == outside
    assert set(Path.cwd().iterdir()) == root_files
    assert not Path("/etc/passwd.jpg").exists()


# 7. Project, class and job ids with ../, %2e%2e, absolute paths -> 404/422, nothing touched.
# Sent over a raw socket with http.client: httpx would resolve "..", as browsers do, before sending.

BAD_IDS = [
    "..",
    "../..",
    "%2e%2e",
    "%2E%2E%2F%2E%2E",
    "..%2F..%2Fteachbox.sqlite",
    "%2Fetc%2Fpasswd",
    "/etc/passwd",
    "%252e%252e",
    "..%5C..%5Cteachbox.sqlite",
    "0" * 32,
    "A" * 32,
]
ID_ROUTES = [
    ("GET", "/api/projects/{bad}"),
    ("PATCH", "/api/projects/{bad}"),
    ("DELETE", "/api/projects/{bad}"),
    ("POST", "/api/projects/{bad}/classes"),
    ("POST", "/api/projects/{bad}/jobs"),
    ("POST", "/api/projects/{bad}/import"),
    ("POST", "/api/projects/{bad}/predict"),
    ("GET", "/api/projects/{pid}/classes/{bad}"),
    ("PATCH", "/api/projects/{pid}/classes/{bad}"),
    ("DELETE", "/api/projects/{pid}/classes/{bad}"),
    ("POST", "/api/projects/{pid}/classes/{bad}/images"),
    ("GET", "/api/projects/{pid}/images/{bad}"),
    ("GET", "/api/projects/{pid}/images/{bad}/thumbnail"),
    ("DELETE", "/api/projects/{pid}/images/{bad}"),
    ("GET", "/api/jobs/{bad}"),
    ("GET", "/api/jobs/{bad}/events"),
    ("GET", "/api/jobs/{bad}/model"),
    ("POST", "/api/jobs/{bad}/cancel"),
    ("GET", "/static/{bad}/app/config.py"),
    ("GET", "/static/{bad}/{bad}/teachbox.sqlite"),
]


def _raw(port: int, method: str, path: str) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(
            method, path, body=b'{"name": "x"}', headers={"Content-Type": "application/json"}
        )
        response = connection.getresponse()
        body = response.read()
        return response.status, json.loads(body) if body.startswith(b"{") else {}
    finally:
        connection.close()


def _without_background_state(project: dict) -> dict:
    return {key: value for key, value in project.items() if key != "pending_embeddings"}


def test_case_07_ids_with_traversal_or_absolute_paths_are_404_and_touch_nothing(
    start_server: Callable[[], ServerProcess],
) -> None:
    server = start_server()
    pid, _ = make_trainable(server.client, per_class=3)
    before = files_under(server.data_dir)
    project = _without_background_state(server.client.get(f"/api/projects/{pid}").json())
    for bad in BAD_IDS:
        for method, route in ID_ROUTES:
            path = route.format(pid=pid, bad=bad)
            status, body = _raw(server.port, method, path)
            assert status in (404, 405, 422), (method, path, status, body)
            assert body["detail"].endswith("."), (method, path, body)
    assert files_under(server.data_dir) == before
    assert _without_background_state(server.client.get(f"/api/projects/{pid}").json()) == project
    assert server.client.get(f"/api/projects/{pid}/images").json()
