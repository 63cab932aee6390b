"""Each job's events with increasing ids: kept in the store, mirrored in memory while the job is live."""

from __future__ import annotations

import asyncio
import bisect
import threading
from collections.abc import Callable
from contextlib import suppress

import anyio
from pydantic import BaseModel

from app.engine.events import TERMINAL_TYPES
from app.service.records import StoredEvent
from app.service.store import Store


class EventLog:
    """Each job's events with increasing ids: persisted in the store, mirrored in memory while live.

    Appends come from worker threads; readers are SSE streams on the event loop, woken on append.
    `shared`: other processes append to the same jobs (workers of a queue), so ids are chosen by
    the database, nothing is mirrored, and `publish(job_id)` tells the other processes (whose
    listener calls `wake`).
    """

    def __init__(
        self,
        store: Store,
        shared: bool = False,
        publish: Callable[[str], None] | None = None,
    ) -> None:
        self._store = store
        self._shared = shared
        self._publish = publish
        self._append_lock = threading.Lock()
        self._lock = threading.Lock()
        self._next: dict[str, int] = {}
        self._live: dict[str, list[StoredEvent]] = {}
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}

    def append(self, job_id: str, event: BaseModel) -> StoredEvent:
        if self._shared:
            return self._append_shared(job_id, event)
        with self._append_lock:
            seq = self._next.pop(job_id, None) or self._store.last_event_seq(job_id) + 1
            stored = StoredEvent(
                seq=seq, type=str(getattr(event, "type", "log")), data=event.model_dump_json()
            )
            self._store.add_event(job_id, seq, stored.type, stored.data)
            terminal = stored.type in TERMINAL_TYPES
            if not terminal:
                self._next[job_id] = seq + 1
            with self._lock:
                if terminal:
                    self._live.pop(job_id, None)
                elif seq == 1 or job_id in self._live:
                    self._live.setdefault(job_id, []).append(stored)
        self.wake(job_id)
        return stored

    def _append_shared(self, job_id: str, event: BaseModel) -> StoredEvent:
        event_type, data = str(getattr(event, "type", "log")), event.model_dump_json()
        seq = self._store.add_next_event(job_id, event_type, data)
        self.wake(job_id)
        if self._publish is not None:
            self._publish(job_id)
        return StoredEvent(seq=seq, type=event_type, data=data)

    def wake(self, job_id: str) -> None:
        """Wake the streams waiting on the job: after an append here, or one another process announced."""
        with self._lock:
            waiters = list(self._waiters.get(job_id, ()))
        for loop, flag in waiters:
            with suppress(RuntimeError):  # the stream's loop has closed: nobody is waiting any more
                loop.call_soon_threadsafe(flag.set)

    def read(self, job_id: str, after: int) -> list[StoredEvent]:
        """Events with ids above `after`, from memory while the job is live, else from the store."""
        live = self._live_after(job_id, after)
        return live if live is not None else self._store.events_after(job_id, after)

    async def read_async(self, job_id: str, after: int) -> list[StoredEvent]:
        """As `read`, with the store's query in a worker thread, off the event loop."""
        live = self._live_after(job_id, after)
        if live is not None:
            return live
        return await anyio.to_thread.run_sync(self._store.events_after, job_id, after)

    def _live_after(self, job_id: str, after: int) -> list[StoredEvent] | None:
        with self._lock:
            live = self._live.get(job_id)
            if live is None:
                return None
            return live[bisect.bisect_right(live, after, key=lambda event: event.seq) :]

    async def wait(self, job_id: str, after: int, timeout_s: float) -> list[StoredEvent]:
        """Events after `after`, waiting up to `timeout_s` for the next one; [] on timeout."""
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.setdefault(job_id, set()).add(waiter)
        try:
            events = await self.read_async(job_id, after)
            if events:
                return events
            try:
                await asyncio.wait_for(waiter[1].wait(), timeout_s)
            except TimeoutError:
                return []  # nothing was appended meanwhile, so there is nothing new to read
            return await self.read_async(job_id, after)
        finally:
            with self._lock:
                waiting = self._waiters.get(job_id, set())
                waiting.discard(waiter)
                if not waiting:
                    self._waiters.pop(job_id, None)
