"""The event log and the SSE stream function: heartbeats when idle, live wake-ups, the end after a terminal event."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from app.engine.events import Cancelled, Log
from app.engine.params import TrainParams
from app.service.event_log import EventLog
from app.service.store import Store
from app.service.uploads import prepare_image
from app.web.routes.jobs import event_stream
from tests.web.api_helpers import BLUE, RED, image_bytes


def _job_id(store: Store) -> str:
    project = store.create_project("demo")
    for name, colour in (("red", RED), ("blue", BLUE)):
        image_class = store.create_class(project.id, name)
        for i in range(3):
            store.add_image(
                image_class, f"{i}.jpg", prepare_image(image_bytes(colour, seed=i), 10_000_000)
            )
    return store.create_job(project.id, TrainParams()).id


async def _collect(log: EventLog, job_id: str, after: int = 0) -> list[str]:
    chunks: list[str] = []
    async for chunk in event_stream(log, job_id, after, heartbeat_s=0.05, stopping=lambda: False):
        chunks.append(chunk)
        if (
            chunk.startswith(": heartbeat")
            and sum(c.startswith(": heartbeat") for c in chunks) == 2
        ):
            threading.Timer(0.01, log.append, (job_id, Log(message="hello"))).start()
        if chunk.startswith("id: 1\n"):
            threading.Timer(0.01, log.append, (job_id, Cancelled())).start()
    return chunks


def test_idle_stream_heartbeats_then_follows_live_events_to_the_end(tmp_path: Path) -> None:
    store = Store(tmp_path)
    log = EventLog(store)
    job_id = _job_id(store)
    chunks = asyncio.run(asyncio.wait_for(_collect(log, job_id), 10))
    assert chunks[0] == "retry: 2000\n\n"
    assert chunks[1:3] == [": heartbeat\n\n", ": heartbeat\n\n"]
    events = [c for c in chunks if c.startswith("id:")]
    assert events == [
        'id: 1\nevent: log\ndata: {"type":"log","level":"info","message":"hello"}\n\n',
        'id: 2\nevent: cancelled\ndata: {"type":"cancelled","message":"Training was cancelled."}\n\n',
    ]
    assert [e.seq for e in store.events_after(job_id, 0)] == [1, 2]


def test_replay_comes_from_the_store_after_a_restart(tmp_path: Path) -> None:
    store = Store(tmp_path)
    job_id = _job_id(store)
    first = EventLog(store)
    for i in range(3):
        first.append(job_id, Log(message=f"m{i}"))
    second = EventLog(store)  # a new process: nothing in memory
    assert [e.seq for e in second.read(job_id, 1)] == [2, 3]
    assert second.append(job_id, Log(message="m3")).seq == 4


def test_a_stream_ends_when_the_server_stops(tmp_path: Path) -> None:
    store = Store(tmp_path)
    job_id = _job_id(store)
    stopping = threading.Event()
    threading.Timer(0.2, stopping.set).start()

    async def run() -> list[str]:
        return [
            c
            async for c in event_stream(
                EventLog(store), job_id, 0, heartbeat_s=30, stopping=stopping.is_set
            )
        ]

    assert asyncio.run(asyncio.wait_for(run(), 5)) == ["retry: 2000\n\n"]
