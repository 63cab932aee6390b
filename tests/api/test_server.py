"""Real uvicorn in a child process: the event stream over a socket, a stalled upload, SIGKILL and SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Callable

import httpx

from app.store import Store
from tests.api.api_helpers import ServerProcess, make_trainable, read_events, wait_for_job

SLOW_JOB = {"mode": "finetune", "epochs": 20, "batch_size": 4}


def _first_events(server: ServerProcess, jid: str, count: int) -> list[dict]:
    """Read `count` events, then drop the connection (the job must not notice)."""
    events: list[dict] = []
    with server.client.stream("GET", f"/api/jobs/{jid}/events") as response:
        for line in response.iter_lines():
            if line.startswith("id: "):
                events.append({"id": int(line[4:])})
            elif line.startswith("event: "):
                events[-1]["event"] = line[7:]
                if len(events) == count:
                    break
    return events


def test_event_stream_over_a_real_socket_with_disconnect_and_replay(
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
        f"POST /api/projects/{pid}/classes/{classes['red']}/images HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n--b\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head.encode())
        started = time.monotonic()
        reply = _read_response(sock)
    assert reply.startswith("HTTP/1.1 408"), reply
    assert time.monotonic() - started < 5
    assert "The upload stalled for 1 seconds" in reply
    assert server.client.get("/api/health").status_code == 200


def test_sigkill_mid_job_then_restart(start_server: Callable[[], ServerProcess]) -> None:
    server = start_server()
    pid, _ = make_trainable(server.client, per_class=4)
    accepted = {image["id"] for image in server.client.get(f"/api/projects/{pid}/images").json()}
    jid = server.client.post(f"/api/projects/{pid}/jobs", json=SLOW_JOB).json()["id"]
    running = _first_events(server, jid, 3)
    assert server.client.get(f"/api/jobs/{jid}").json()["status"] == "running", running
    server.kill()

    server = start_server()
    job = server.client.get(f"/api/jobs/{jid}").json()
    assert job["status"] == "interrupted"
    images = server.client.get(f"/api/projects/{pid}/images").json()
    assert {image["id"] for image in images} == accepted
    for image in images:
        assert server.client.get(image["url"]).status_code == 200
        assert server.client.get(image["thumbnail_url"]).status_code == 200
    replay = [e for e in read_events(server.client, jid) if "event" in e]
    assert replay[-1]["event"] == "failed" and [e["id"] for e in replay] == list(
        range(1, len(replay) + 1)
    )

    fresh = server.client.post(f"/api/projects/{pid}/jobs", json={"mode": "transfer", "epochs": 2})
    assert fresh.status_code == 202
    assert wait_for_job(server.client, fresh.json()["id"], {"succeeded"})["status"] == "succeeded"


def test_sigterm_with_a_stream_open_shuts_down_in_time(
    start_server: Callable[[], ServerProcess],
) -> None:
    """The open stream ends, the running job is stopped and recorded as interrupted, the process exits."""
    server = start_server()
    pid, _ = make_trainable(server.client, per_class=4)
    jid = server.client.post(f"/api/projects/{pid}/jobs", json=SLOW_JOB).json()["id"]
    with (
        httpx.Client(base_url=server.url, timeout=30) as follower,
        follower.stream("GET", f"/api/jobs/{jid}/events") as response,
    ):
        for line in response.iter_lines():
            if line == "event: started":
                started = time.monotonic()
                server.process.send_signal(signal.SIGTERM)
        server.process.wait(20)
    assert time.monotonic() - started < 15
    # uvicorn re-raises the signal once it has shut down cleanly
    assert server.process.returncode in (0, -signal.SIGTERM)
    server.log.flush()
    assert "Application shutdown complete" in (server.data_dir.parent / "server.log").read_text()
    store = Store(server.data_dir)
    job = store.get_job(jid)
    assert job is not None and job.status == "interrupted"
    last = store.events_after(jid, 0)[-1]
    assert last.type == "failed"
    assert json.loads(last.data)["error"].startswith(
        "Teachbox was shut down while this job was running"
    )
