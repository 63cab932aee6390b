"""`teachbox worker`: a Celery worker process that runs one job at a time on one device.

It claims a job by taking its lease (job_leases.py) and renews it every second while training;
the renewal also reads a cancel asked from any web process. SIGTERM (Celery's warm shutdown)
stops the training at its next check and hands the job back to the queue for another worker.
A worker killed outright stops renewing: a reaper (here and in every web process) sends the job
back to the queue once the lease expires, and another worker starts it again.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from pathlib import Path
from typing import Any

from celery.signals import worker_shutting_down
from pydantic import BaseModel

from app.config import Settings
from app.engine.errors import TrainingCancelled
from app.engine.events import Cancelled, Log
from app.service.event_log import EventLog
from app.service.records import Job
from app.service.run_context import Embedders
from app.service.runners.execution import JobExecution
from app.service.runners.job_queue import EMBED, EMBED_QUEUE, JOBS_QUEUE, RUN_JOB, JobQueue
from app.service.runners.reaper import Reaper
from app.service.store import Store

logger = logging.getLogger("teachbox.worker")


def worker_name(device: str) -> str:
    """How job records and events name this worker: host, process id and device."""
    return f"{socket.gethostname()}:{os.getpid()}:{device}"


class _Lease(threading.Thread):
    """Renews the running job's lease every second; notes a cancel request or a lost lease."""

    def __init__(self, store: Store, job_id: str, worker: str, lease_s: float) -> None:
        super().__init__(name=f"teachbox-lease-{job_id[:8]}", daemon=True)
        self._renew = lambda: store.renew_lease(job_id, worker, lease_s)
        self._every_s = min(1.0, lease_s / 3)
        self.cancelled, self.lost, self.done = (
            threading.Event(),
            threading.Event(),
            threading.Event(),
        )

    def run(self) -> None:
        while not self.done.wait(self._every_s):
            try:
                lease = self._renew()
            except Exception:  # a locked database: the lease outlives a few missed renewals
                logger.exception("Renewing a job's lease failed")
                continue
            if lease.cancel_requested:
                self.cancelled.set()
            if not lease.held:
                self.lost.set()
                return


class QueueWorker:
    """Runs the queue's jobs and embedding chunks in this process, on `settings.device`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.name = worker_name(settings.device)
        self.queue = JobQueue(settings)
        self.store = Store(settings.data_dir)
        self.log = EventLog(self.store, shared=True, publish=self.queue.publish_event)
        self._embedder = Embedders(settings)
        self._execution = JobExecution(self.store, self.log, settings, self._embedder)
        self._stopping = threading.Event()
        self._reaper = Reaper(
            self.store, self.log, settings.job_max_lost_workers, self.queue.send_job
        )

    def run_job(self, job_id: str) -> None:
        """Train the job if it is still queued; a late or repeated message finds it taken and does nothing."""
        if self._stopping.is_set() or not self.store.claim_job(
            job_id, self.name, self.settings.job_lease_s
        ):
            if self._stopping.is_set():
                self.queue.send_job(job_id)  # taken off the queue while stopping: put it back
            return
        job = self.store.get_job(job_id)
        if job is None:  # deleted with its project meanwhile
            return
        self._announce(job)
        lease = _Lease(self.store, job_id, self.name, self.settings.job_lease_s)
        lease.start()
        try:
            terminal = self._execution.train(
                job,
                lambda: lease.cancelled.is_set() or lease.lost.is_set() or self._stopping.is_set(),
            )
        finally:
            lease.done.set()
        self._conclude(job, terminal, lease)

    def embed(self, project_id: str, backbone: str, paths: list[str]) -> None:
        """Embed a chunk; yield to a job that is waiting (the chunk goes back, its done part cached)."""
        yielded = False
        try:
            self._embedder(backbone).embed(
                [Path(p) for p in paths],
                should_stop=lambda: self._stopping.is_set() or self.queue.jobs_waiting(),
            )
        except TrainingCancelled:
            yielded = True
        except (
            Exception
        ) as exc:  # a deleted project, missing weights: the job will say so if it matters
            logger.warning("Background embedding for project %s stopped: %r", project_id, exc)
        finally:
            self.queue.embedded(project_id, len(paths))
        if yielded:
            self.queue.send_embedding(project_id, backbone, paths)

    def stop_soon(self) -> None:
        """SIGTERM: stop the running job at its next check and hand it back."""
        self._stopping.set()

    def _announce(self, job: Job) -> None:
        if job.attempts > 1:
            message = f"Restarted on worker {self.name} (attempt {job.attempts})."
        else:
            message = f"Running on worker {self.name}."
        self.log.append(
            job.id, Log(level="warning" if job.attempts > 1 else "info", message=message)
        )

    def _conclude(self, job: Job, terminal: BaseModel, lease: _Lease) -> None:
        if lease.lost.is_set() and not lease.cancelled.is_set():
            logger.warning("Job %s was taken back from this worker; its result is dropped", job.id)
            return
        stopped = isinstance(terminal, Cancelled) and not lease.cancelled.is_set()
        if stopped and self._stopping.is_set() and self.store.hand_back(job.id, self.name):
            self.log.append(
                job.id,
                Log(
                    level="warning",
                    message=f"Worker {self.name} was told to stop; the job goes back to the queue.",
                ),
            )
            self.queue.send_job(job.id)
            return
        self._execution.finish(job, terminal, shutting_down=False, worker=self.name)

    # The Celery worker around it

    def serve(self) -> int:
        """Run the Celery worker until it is told to stop; its exit code."""
        celery = self.queue.celery
        celery.task(name=RUN_JOB, acks_late=True)(self.run_job)
        celery.task(name=EMBED, acks_late=True)(self.embed)
        worker_shutting_down.connect(self._on_shutdown, weak=False)
        self._reaper.start()
        try:
            worker: Any = celery.Worker(
                hostname=f"{os.getpid()}@{socket.gethostname()}",
                pool="solo",
                concurrency=1,
                prefetch_multiplier=1,
                queues=[JOBS_QUEUE, EMBED_QUEUE],
                without_mingle=True,
                without_gossip=True,
                loglevel="INFO",
                quiet=True,
            )
            worker.start()
            return int(worker.exitcode or 0)
        finally:
            self._reaper.stop()
            self.queue.close()

    def _on_shutdown(self, **_: Any) -> None:
        self.stop_soon()
