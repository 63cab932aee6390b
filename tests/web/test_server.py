"""Real uvicorn in a child process: the event stream over a socket, a stalled upload, SIGKILL and SIGTERM.

Cases 19-21 of issue 6 (reliability) need a real process and real signals, so they live here.
"""

from __future__ import annotations

import hashlib
import json
import signal
import socket
import subprocess
from collections.abc import Callable
from typing import Any

import httpx

from app.service.store import Store
from tests.web.api_helpers import SLOW_JOB, ServerProcess, make_trainable, read_events, wait_for_job

# How long the test waits for a server that is told to stop (its own timeout is 3 s, see ServerProcess).
EXIT_GRACE_S = 30


def _events_until(
    server: ServerProcess, jid: str, done: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    """Read events until `done(events)` says so, then drop the connection (the job must not notice)."""
    events: list[dict[str, Any]] = []
    with server.client.stream("GET", f"/api/jobs/{jid}/events") as response:
        for line in response.iter_lines():
            if line.startswith("id: "):
                events.append({"id": int(line[4:])})
            elif line.startswith("event: "):
                events[-1]["event"] = line[7:]
            elif line.startswith("data: "):
                events[-1]["data"] = json.loads(line[6:])
                if done(events):
                    break
    return events


def _first_events(server: ServerProcess, jid: str, count: int) -> list[dict[str, Any]]:
    return _events_until(server, jid, lambda events: len(events) == count)


def _training_epochs(events: list[dict[str, Any]]) -> bool:
    """True once the first epoch has ended: the next one (of 30 head epochs first) is under way."""
    return events[-1]["data"]["type"] == "epoch"


def test_case_21_a_client_that_disconnects_never_stops_the_job_and_replays_from_last_event_id(
    start_server: Callable[[], ServerProcess],
) -> None:
    server = start_server()
    pid, _ = make_trainable(server.client)
    jid = server.client.post(
        f"/api/projects/{pid}/jobs", json={"mode": "transfer", "epochs": 3}
    ).json()["id"]
    first = _first_events(server, jid, 2)
    assert [e["id"] for e in first] == [1, 2] and first[0]["event"] == "started"

    rest = [e for e in read_events(server.client, jid, last_event_id=2) if "event" in e]
    assert rest[0]["id"] == 3 and rest[-1]["event"] == "done"
    assert [e["id"] for e in rest] == list(range(3, 3 + len(rest)))
    assert wait_for_job(server.client, jid, {"succeeded"})["metrics"]["val_accuracy"] >= 0.5
    response = server.client.get("/api/health")
    assert response.headers["content-security-policy"].startswith("default-src 'self'")


def _read_response(sock: socket.socket) -> str:
    """One HTTP response off a raw socket: the headers, then as many body bytes as they announce."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    length = int(
        next(
            line.split(b":")[1]
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
    )
    while len(body) < length:
        body += sock.recv(65536)
    return (head + b"\r\n\r\n" + body).decode()


def test_a_stalled_upload_is_cut_off(
    start_server: Callable[[], ServerProcess], monkeypatch
) -> None:
    monkeypatch.setenv("TEACHBOX_UPLOAD_TIMEOUT_S", "1")
    server = start_server()
    pid, classes = make_trainable(server.client, per_class=1)
    head = (
        f"POST /api/projects/{pid}/classes/{classes['red']}/images HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n--b\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head.encode())
        reply = _read_response(sock)
    assert reply.startswith("HTTP/1.1 408"), reply
    assert "so the server stopped waiting" in reply
    assert server.client.get("/api/health").status_code == 200


def _stored_files_intact(server: ServerProcess, pid: str) -> list[dict[str, Any]]:
    """The project's images, each checked byte for byte against the hash recorded at upload."""
    store = Store(server.data_dir)
    images = store.list_images(pid)
    for image in images:
        assert hashlib.sha256(store.image_path(image).read_bytes()).hexdigest() == image.sha256
        assert store.thumbnail_path(image).is_file()
    return server.client.get(f"/api/projects/{pid}/images").json()


def test_case_19_kill_9_mid_epoch_then_restart(start_server: Callable[[], ServerProcess]) -> None:
    server = start_server()
    pid, _ = make_trainable(server.client, per_class=4)
    accepted = {image["id"] for image in server.client.get(f"/api/projects/{pid}/images").json()}
    jid = server.client.post(f"/api/projects/{pid}/jobs", json=SLOW_JOB).json()["id"]
    _events_until(server, jid, _training_epochs)
    assert server.client.get(f"/api/jobs/{jid}").json()["status"] == "running"
    server.kill()

    server = start_server()
    job = server.client.get(f"/api/jobs/{jid}").json()
    assert job["status"] == "interrupted"
    assert job["error"].startswith("Teachbox stopped while this job was queued or running")
    images = _stored_files_intact(server, pid)
    assert {image["id"] for image in images} == accepted
    for image in images:
        assert server.client.get(image["url"]).status_code == 200
        assert server.client.get(image["thumbnail_url"]).status_code == 200
    leftovers = [
        p for p in server.data_dir.rglob("*") if ".partial" in p.name or ".export-" in p.name
    ]
    assert leftovers == []
    replay = [e for e in read_events(server.client, jid) if "event" in e]
    assert [e["id"] for e in replay] == list(range(1, len(replay) + 1))
    assert replay[-1]["event"] == "interrupted"
    assert json.loads(replay[-1]["data"])["message"] == job["error"]

    fresh = server.client.post(f"/api/projects/{pid}/jobs", json={"mode": "transfer", "epochs": 2})
    assert fresh.status_code == 202
    assert wait_for_job(server.client, fresh.json()["id"], {"succeeded"})["status"] == "succeeded"


def test_case_20_sigterm_with_stream_clients_shuts_down_gracefully(
    start_server: Callable[[], ServerProcess],
) -> None:
    """Every open stream ends, the running job is stopped and recorded as interrupted, the process exits."""
    server = start_server()
    pid, _ = make_trainable(server.client, per_class=4)
    jid = server.client.post(f"/api/projects/{pid}/jobs", json=SLOW_JOB).json()["id"]
    wait_for_job(server.client, jid, {"running"})
    followers = [httpx.Client(base_url=server.url, timeout=EXIT_GRACE_S) for _ in range(3)]
    streams = [f.stream("GET", f"/api/jobs/{jid}/events") for f in followers]
    responses = [stream.__enter__() for stream in streams]
    lines = [response.iter_lines() for response in responses]
    for follower_lines in lines:
        assert next(follower_lines).startswith("retry:")
    server.process.send_signal(signal.SIGTERM)
    try:
        for follower_lines in lines:
            list(follower_lines)  # each stream ends instead of hanging on
        server.process.wait(EXIT_GRACE_S)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"the server did not stop within {EXIT_GRACE_S} s") from exc
    finally:
        for stream, follower in zip(streams, followers, strict=True):
            stream.__exit__(None, None, None)
            follower.close()
    # uvicorn re-raises the signal once it has shut down cleanly
    assert server.process.returncode in (0, -signal.SIGTERM)
    server.log.flush()
    assert "Application shutdown complete" in (server.data_dir.parent / "server.log").read_text()
    store = Store(server.data_dir)
    job = store.get_job(jid)
    assert job is not None and job.status == "interrupted"
    last = store.events_after(jid, 0)[-1]
    assert last.type == "interrupted"
    assert json.loads(last.data)["message"].startswith(
        "Teachbox was shut down while this job was running"
    )
