"""Training jobs off the event loop: a persisted event log per job, a runner interface, one worker per device.

The routes talk to a `JobRunner`; `InProcessRunner` is the one that ships: a worker thread that
trains one job at a time on the configured device and, between jobs, computes the embeddings of
newly uploaded images so that a transfer-mode job only has to train the head. A queue on a
distributed engine implements the same protocol (runners/celery_runner.py), on the same store.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel

from app.config import Settings
from app.engine.embeddings import Embedder, EmbeddingCache
from app.engine.errors import TeachboxError, TrainingCancelled
from app.engine.events import Cancelled, Interrupted
from app.service.event_log import EventLog
from app.service.records import Job, JobKind, JobStatus, StoredImage
from app.service.run_context import Embedders, project_backbone
from app.service.runners.execution import JobExecution
from app.service.store import Store
from app.service.warm_models import WarmModels

logger = logging.getLogger("teachbox.jobs")

INTERRUPTED_BY_RESTART = "Teachbox stopped while this job was queued or running, so it was interrupted. Start training again."
# Background embedding works in chunks, so that a job submitted meanwhile waits at most one chunk.
EMBED_CHUNK = 32
_JOB_PRIORITY, _EMBED_PRIORITY, _STOP_PRIORITY = 1, 2, 0


@dataclass(order=True)
class _Task:
    priority: int
    order: int
    run: Callable[[], None] | None = field(compare=False, default=None)


class InProcessRunner:
    """One worker thread for the configured device: jobs first, background embedding in between."""

    def __init__(self, store: Store, log: EventLog, models: WarmModels, settings: Settings) -> None:
        self._store, self._log, self._models, self._settings = store, log, models, settings
        self._queue: queue.PriorityQueue[_Task] = queue.PriorityQueue()
        self._order = itertools.count()
        self._lock = threading.Lock()
        self._stops: dict[str, threading.Event] = {}
        self._jobs_waiting = 0
        self._pending: Counter[str] = Counter()
        self._embedder = Embedders(settings)
        self._shutting_down = threading.Event()
        self._execution = JobExecution(store, log, settings, self._embedder)
        self._thread = threading.Thread(
            target=self._work, name=f"teachbox-worker-{settings.device}", daemon=True
        )

    # The JobRunner protocol

    def start(self) -> None:
        """Mark jobs a previous process left unfinished as interrupted, then start the worker."""
        for job_id in self._store.interrupt_unfinished(INTERRUPTED_BY_RESTART):
            self._log.append(job_id, Interrupted(message=INTERRUPTED_BY_RESTART))
        self._thread.start()
        for project in self._store.list_projects():
            self.embed_soon(project.id, self._store.list_images(project.id))

    def stop(self, timeout_s: float) -> None:
        """Stop the running job (it is marked interrupted) and wait for the worker to finish."""
        self._shutting_down.set()
        with self._lock:
            for flag in self._stops.values():
                flag.set()
        self._put(_STOP_PRIORITY, None)
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        if self._thread.is_alive():
            self._interrupt_running()

    def _interrupt_running(self) -> None:
        """A job that outlived the shutdown timeout dies with the process: record it as interrupted
        now rather than leave it "running" until the next start. Should its thread still finish,
        the store refuses a second ending."""
        with self._lock:
            running = list(self._stops)
        for job_id in running:
            job = self._store.get_job(job_id)
            if job is not None and job.status is JobStatus.RUNNING:
                self._execution.finish(job, Cancelled(), shutting_down=True)

    def submit(self, job: Job) -> None:
        with self._lock:
            self._stops[job.id] = threading.Event()
            self._jobs_waiting += 1
        self._put(_JOB_PRIORITY, lambda: self._run_job(job.id))

    def cancel(self, job: Job) -> None:
        """Cancel a queued job at once; ask a running one to stop at its next check."""
        with self._lock:
            flag = self._stops.get(job.id)
        if flag is not None:
            flag.set()
        if self._store.cancel_queued(job.id):
            self._log.append(job.id, Cancelled())

    def embed_soon(self, project_id: str, images: Sequence[StoredImage]) -> None:
        if not self._settings.embed_on_upload or not images:
            return
        backbone = project_backbone(self._store, project_id)
        cache = self._embedder(backbone).cache
        cached = cache.get_many([EmbeddingCache.key(backbone, image.sha256) for image in images])
        paths = [
            self._store.image_path(im)
            for im in images
            if EmbeddingCache.key(backbone, im.sha256) not in cached
        ]
        if not paths:
            return
        with self._lock:
            self._pending[project_id] += len(paths)
        self._put(_EMBED_PRIORITY, lambda: self._embed(project_id, backbone, paths))

    def pending_embeddings(self, project_id: str) -> int:
        with self._lock:
            return self._pending[project_id]

    def embedder(self, backbone: str) -> Embedder:
        """The embedder jobs use, with its cache: for analyses outside a job, such as data health."""
        return self._embedder(backbone)

    # The worker

    def _put(self, priority: int, run: Callable[[], None] | None) -> None:
        self._queue.put(_Task(priority, next(self._order), run))

    def _work(self) -> None:
        while True:
            task = self._queue.get()
            if task.run is None:
                return
            try:
                task.run()
            except Exception:
                logger.exception("A background task failed")

    def _should_yield(self) -> bool:
        return self._jobs_waiting > 0 or self._shutting_down.is_set()

    def _embed(self, project_id: str, backbone: str, paths: list[Path]) -> None:
        chunk, rest = paths[:EMBED_CHUNK], paths[EMBED_CHUNK:]
        try:
            self._embedder(backbone).embed(chunk, should_stop=self._should_yield)
        except TrainingCancelled:  # a job is waiting: let it run, then come back to these
            chunk, rest = [], paths
        except Exception as exc:
            # A deleted project, missing weights: the job will say so if it matters.
            logger.warning("Background embedding for project %s stopped: %r", project_id, exc)
            chunk, rest = paths, []
        if self._shutting_down.is_set():
            chunk, rest = paths, []
        with self._lock:
            self._pending[project_id] -= len(chunk)
            if self._pending[project_id] <= 0:
                del self._pending[project_id]
        if rest:
            self._put(_EMBED_PRIORITY, lambda: self._embed(project_id, backbone, rest))

    def _run_job(self, job_id: str) -> None:
        with self._lock:
            self._jobs_waiting -= 1
            stop = self._stops.setdefault(job_id, threading.Event())
        try:
            job = self._store.get_job(job_id)
            if job is not None and self._store.start_job(job_id):
                self._finish(job, self._execution.train(job, stop.is_set))
        finally:
            with self._lock:
                self._stops.pop(job_id, None)

    def _finish(self, job: Job, terminal: BaseModel) -> None:
        shutting_down = self._shutting_down.is_set()
        outcome = self._execution.finish(job, terminal, shutting_down)
        if (
            outcome is not None
            and outcome.status is JobStatus.SUCCEEDED
            and job.kind is JobKind.TRAIN
            and not shutting_down
        ):
            with suppress(TeachboxError):
                self._models.get(job)
