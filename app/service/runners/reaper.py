"""Jobs whose worker was lost: taken back from expired leases, queued again or failed, and said so
in their event streams; and queued jobs whose message was lost, sent again. Every worker and every
web process of a queue runs one."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from app.engine.events import Cancelled, Failed, Log
from app.service.event_log import EventLog
from app.service.job_leases import LostOutcome, too_many_lost_workers
from app.service.runners.job_queue import JobQueue
from app.service.store import Store

logger = logging.getLogger("teachbox.queue")

# How often a reaper looks for expired leases and for queued jobs without a message.
REAP_EVERY_S = 1.0


def reap(store: Store, log: EventLog, max_lost: int, requeue: Callable[[str], None]) -> int:
    """Take back the jobs of lost workers; how many there were."""
    lost_jobs = store.reap_expired(max_lost)
    for lost in lost_jobs:
        if lost.outcome is LostOutcome.REQUEUED:
            log.append(
                lost.job_id,
                Log(
                    level="warning",
                    message=f"Worker {lost.worker} was lost during attempt {lost.attempts}; the job goes back to the queue.",
                ),
            )
            requeue(lost.job_id)
        elif lost.outcome is LostOutcome.FAILED:
            log.append(
                lost.job_id, Failed(error=too_many_lost_workers(lost.lost_workers, lost.worker))
            )
        else:
            log.append(lost.job_id, Cancelled())
        logger.warning("Job %s lost worker %s: %s", lost.job_id, lost.worker, lost.outcome)
    return len(lost_jobs)


def resend_lost_messages(store: Store, queue: JobQueue, after_s: float) -> list[str]:
    """Send again the jobs queued for more than `after_s` that no message in the broker names: a
    web process died between writing the job and sending its message, or the broker lost it. Two
    reapers may both send one; a worker's claim is a conditional update, so the extra copy finds
    the job taken and does nothing."""
    waiting = store.queued_job_ids(created_before=time.time() - after_s)
    lost = queue.without_message(waiting) if waiting else []
    for job_id in lost:
        logger.warning(
            "Job %s was queued without a message in the broker; sending it again", job_id
        )
        queue.send_job(job_id)
    return lost


class Reaper:
    """A daemon thread that reaps and sends lost messages again every REAP_EVERY_S until stopped."""

    def __init__(
        self, store: Store, log: EventLog, max_lost: int, queue: JobQueue, resend_after_s: float
    ) -> None:
        def run() -> None:
            reap(store, log, max_lost, queue.send_job)
            resend_lost_messages(store, queue, resend_after_s)

        self._run = run
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="teachbox-reaper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.wait(REAP_EVERY_S):
            try:
                self._run()
            except Exception:  # a locked database, a broker away: try again next time
                logger.exception("Reaping lost workers' jobs failed")
