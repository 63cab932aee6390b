"""One job carried out: its snapshot trained (again with half the batch when the GPU runs out of
memory), its events appended, and its terminal event turned into the job's outcome.

Both runners use it: the embedded worker thread and the queue's worker processes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from app.config import Settings
from app.engine.compare.run import compare_modes
from app.engine.context import StopCheck
from app.engine.dataset import from_items
from app.engine.embeddings import Embedder
from app.engine.errors import TeachboxError, TrainingCancelled, unexpected_failure
from app.engine.events import TERMINAL_TYPES, Cancelled, Done, Failed, Interrupted, Log
from app.engine.params import TrainParams
from app.engine.pipeline import train_to_zip
from app.engine.training import is_out_of_memory, release_accelerator_memory
from app.service.event_log import EventLog
from app.service.records import Job, JobKind, JobStatus
from app.service.redaction import Publisher
from app.service.run_context import run_context
from app.service.store import Store

logger = logging.getLogger("teachbox.jobs")

INTERRUPTED_BY_SHUTDOWN = "Teachbox was shut down while this job was running, so it was interrupted. Start training again."
# A job that runs out of GPU memory is trained again with half the batch size, at most this often.
OOM_RETRIES = 3


def out_of_memory_sentence(batch_size: int) -> str:
    return (
        f"The GPU ran out of memory even with a batch size of {batch_size}. Choose a smaller batch "
        "size or backbone, or stop other work on the GPU, then train again."
    )


@dataclass
class Outcome:
    status: JobStatus
    event: BaseModel
    metrics: dict[str, Any] | None = None
    error: str | None = None


def outcome_of(terminal: BaseModel, shutting_down: bool) -> Outcome:
    if isinstance(terminal, Done):
        metrics = {
            "val_accuracy": terminal.val_accuracy,
            "train_seconds": terminal.train_seconds,
            **terminal.metrics,
        }
        return Outcome(JobStatus.SUCCEEDED, terminal, metrics=metrics)
    if isinstance(terminal, Cancelled) and shutting_down:
        return Outcome(
            JobStatus.INTERRUPTED,
            Interrupted(message=INTERRUPTED_BY_SHUTDOWN),
            error=INTERRUPTED_BY_SHUTDOWN,
        )
    if isinstance(terminal, Cancelled):
        return Outcome(JobStatus.CANCELLED, terminal)
    error = terminal.error if isinstance(terminal, Failed) else str(terminal)
    return Outcome(JobStatus.FAILED, terminal, error=error)


class JobExecution:
    """Trains jobs from the store, appending their events to the log."""

    def __init__(
        self,
        store: Store,
        log: EventLog,
        settings: Settings,
        embedder: Callable[[str], Embedder],
    ) -> None:
        self._store, self._log, self._settings, self._embedder = store, log, settings, embedder

    def train(self, job: Job, should_stop: StopCheck) -> BaseModel:
        """Train; when the GPU runs out of memory, train again with half the batch, a few times."""
        params, retries = job.params, 0
        while True:
            terminal, out_of_memory = self._attempt(job, params, should_stop)
            if not out_of_memory:
                if isinstance(terminal, Done) and params is not job.params:
                    metrics = {**terminal.metrics, "batch_size": params.batch_size}
                    return terminal.model_copy(update={"metrics": metrics})
                return terminal
            smaller = params.batch_size // 2
            if should_stop():
                return Cancelled()
            if smaller < 1 or retries == OOM_RETRIES:
                return Failed(error=out_of_memory_sentence(params.batch_size))
            release_accelerator_memory()
            self._log.append(
                job.id,
                Log(
                    level="warning",
                    message=f"The GPU ran out of memory with a batch size of {params.batch_size}; training again with {smaller}.",
                ),
            )
            params, retries = params.model_copy(update={"batch_size": smaller}), retries + 1

    def finish(
        self, job: Job, terminal: BaseModel, shutting_down: bool, worker: str | None = None
    ) -> Outcome | None:
        """Record the result before the terminal event, so a stream's reader sees the final job;
        None when `worker` no longer held the job (nothing is recorded then)."""
        outcome = outcome_of(self.public(job).event(terminal), shutting_down)
        if not self._store.finish_job(
            job.id, outcome.status, outcome.metrics, outcome.error, worker=worker
        ):
            return None
        self._log.append(job.id, outcome.event)
        return outcome

    def public(self, job: Job) -> Publisher:
        return Publisher(self._store, job.project_id)

    def _attempt(
        self, job: Job, params: TrainParams, should_stop: StopCheck
    ) -> tuple[BaseModel, bool]:
        """Run the training core once: its terminal event (made here when it could not say), and
        whether it ran out of accelerator memory."""
        terminal: list[BaseModel] = []

        def on_event(event: BaseModel) -> None:
            if getattr(event, "type", None) in TERMINAL_TYPES:
                terminal.append(event)
            else:
                self._log.append(job.id, self.public(job).event(event))

        try:
            keys = self._store.content_keys(job.project_id)
            dataset = from_items(
                self._store.job_items(job),
                job.labels,
                val_fraction=params.val_split,
                seed=params.seed,
                key=lambda path: keys.get(path, str(path)),
            )
            compare = job.kind is JobKind.COMPARE
            run = run_context(
                self._settings, self._embedder(params.backbone), on_event, should_stop
            )
            (compare_modes if compare else train_to_zip)(
                dataset,
                params,
                self._store.compare_dir(job) if compare else self._store.model_path(job),
                run,
            )
        except TrainingCancelled:
            pass
        except TeachboxError as exc:
            terminal.append(Failed(error=exc.message))
        except Exception as exc:
            if is_out_of_memory(exc):  # the traceback, which holds the GPU tensors, is not kept
                logger.warning("Job %s ran out of GPU memory: %s", job.id, exc)
                return Failed(error=out_of_memory_sentence(params.batch_size)), True
            logger.exception("Job %s failed", job.id)
            terminal.append(Failed(error=unexpected_failure("Training", exc)))
        return (terminal[0] if terminal else Cancelled()), False
