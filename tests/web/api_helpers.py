"""Helpers for the API tests: real image bytes, API shortcuts, an event-stream reader, a server process."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from tests.concurrently import all_return_at_once

ROOT = Path(__file__).resolve().parents[2]
# The test client's address: a loopback name, as the server answers only to allowed host names.
LOCAL = "http://127.0.0.1"
RED, BLUE, GREEN = (200, 30, 30), (30, 40, 200), (30, 180, 40)
# Fine-tuning on the CPU takes seconds per epoch: long enough to act on a running job.
SLOW_JOB = {"mode": "finetune", "epochs": 20, "batch_size": 4}


def image_bytes(
    colour: tuple[int, int, int] = RED,
    seed: int = 0,
    size: tuple[int, int] = (64, 48),
    fmt: str = "JPEG",
) -> bytes:
    """A real image file's bytes: a flat colour with seeded noise, so that near-identical files still differ."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(
        np.array(colour, dtype=np.int16) + rng.integers(-25, 26, (size[1], size[0], 3)), 0, 255
    ).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, fmt)
    return buffer.getvalue()


def create_project(client: httpx.Client | TestClient, name: str = "demo") -> str:
    response = client.post("/api/projects", json={"name": name})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def create_class(client: httpx.Client | TestClient, pid: str, name: str) -> str:
    response = client.post(f"/api/projects/{pid}/classes", json={"name": name})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def upload(
    client: httpx.Client | TestClient, pid: str, cid: str, files: list[tuple[str, bytes]]
) -> httpx.Response:
    return client.post(
        f"/api/projects/{pid}/classes/{cid}/images",
        files=[("files", (name, data, "image/jpeg")) for name, data in files],
    )


def make_trainable(
    client: httpx.Client | TestClient,
    per_class: int = 5,
    classes: dict[str, tuple[int, int, int]] | None = None,
) -> tuple[str, dict[str, str]]:
    """A project with a few small photos per class; returns its id and the class ids by name."""
    pid = create_project(client)
    class_ids = {}
    for index, (name, colour) in enumerate((classes or {"red": RED, "blue": BLUE}).items()):
        class_ids[name] = create_class(client, pid, name)
        files = [
            (f"{name}_{i}.jpg", image_bytes(colour, seed=index * 100 + i)) for i in range(per_class)
        ]
        response = upload(client, pid, class_ids[name], files)
        assert response.status_code == 200 and len(response.json()["added"]) == per_class, (
            response.text
        )
    return pid, class_ids


def read_events(
    client: httpx.Client | TestClient,
    jid: str,
    last_event_id: int | None = None,
    timeout: float = 120,
) -> list[dict[str, Any]]:
    """Read a job's event stream to its end: each event as {"id", "event", "data"}, comments as {"comment"}."""
    headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    with client.stream(
        "GET", f"/api/jobs/{jid}/events", headers=headers, timeout=timeout
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith(":"):
                events.append({"comment": line[1:].strip()})
            elif line.startswith("id: "):
                current["id"] = int(line[4:])
            elif line.startswith("event: "):
                current["event"] = line[7:]
            elif line.startswith("data: "):
                current["data"] = line[6:]
            elif not line and current:
                if "event" in current:
                    events.append(current)
                current = {}
    return events


def wait_for_job(
    client: httpx.Client | TestClient, jid: str, statuses: set[str], timeout: float = 120
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{jid}").json()
        if job["status"] in statuses:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {jid} did not reach {statuses}; it is {job['status']}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`python -m app.web.factory` in a child process on a free loopback port (real uvicorn, real signals)."""

    def __init__(self, data_dir: Path, cache_dir: Path, log_path: Path, **settings: str) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = (
            os.environ
            | {
                "TEACHBOX_DATA_DIR": str(data_dir),
                "TEACHBOX_CACHE_DIR": str(cache_dir),
                "TEACHBOX_PORT": str(self.port),
                "TEACHBOX_SSE_HEARTBEAT_S": "0.5",
                "TEACHBOX_SHUTDOWN_TIMEOUT_S": "3",
            }
            | {f"TEACHBOX_{name.upper()}": value for name, value in settings.items()}
        )
        self.log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app.web.factory"],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.client = httpx.Client(base_url=self.url, timeout=30)
        self._wait_until_healthy()

    def _wait_until_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the server exited with {self.process.returncode}"
            try:
                if self.client.get("/api/health").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError("the server did not answer /api/health in time")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def close(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


def unnamed_open_files(pid: int | None = None) -> set[str]:
    """Files a process holds open whose names are gone, e.g. upload spools: from /proc/<pid>/fd."""
    folder = Path(f"/proc/{pid or os.getpid()}/fd")
    found = set()
    for fd in folder.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.endswith("(deleted)"):
            found.add(target)
    return found


def files_under(root: Path) -> dict[str, bytes]:
    """Every file under `root` with its bytes, the SQLite database and its journals left out."""
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.name.startswith("teachbox.sqlite")
    }


def post_at_once(client: TestClient, url: str, count: int, **request: Any) -> list[httpx.Response]:
    """`count` POSTs (each with `request`, e.g. json= or files=) released together by a barrier, as racing browsers would send them."""
    return all_return_at_once([lambda: client.post(url, **request)] * count)


def make_zip(entries: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    """A zip in memory holding `entries` (name -> bytes) exactly as named, `..` and all."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
    return buffer.getvalue()


def post_zip(client: TestClient, pid: str, data: bytes, field: str = "file") -> httpx.Response:
    return client.post(
        f"/api/projects/{pid}/import", files={field: ("classes.zip", data, "application/zip")}
    )
