"""Jobs run by workers in other processes: a lease per running job, renewed while its worker lives.

A worker claims a queued job atomically and renews the lease every second or so; a job whose lease
expired lost its worker (`kill -9`, a crashed machine) and goes back to the queue, or fails after
too many lost workers. Only the holder of a live lease may finish the job, so however often the
queue delivers a message, no job runs twice at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select, update

from app.service.database import Database
from app.service.tables import ACTIVE, insertion_order, jobs


class LostOutcome(StrEnum):
    REQUEUED = "requeued"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Lease:
    """What renewing a lease tells the worker: whether it still holds the job, whether to stop."""

    held: bool
    cancel_requested: bool


@dataclass(frozen=True)
class LostJob:
    """A running job whose worker stopped renewing its lease, and what became of it."""

    job_id: str
    worker: str
    attempts: int
    lost_workers: int
    outcome: LostOutcome


def too_many_lost_workers(lost: int, worker: str) -> str:
    return (
        f"The job's worker stopped {lost} times while running it (the last one was {worker}), so "
        "Teachbox gave up on it. Check the workers' logs (memory, GPU, the machine), then train again."
    )


class JobLeases(Database):
    """The lease columns of the jobs table: worker, attempts, lease_until, cancel_requested, lost_workers."""

    def claim_job(self, job_id: str, worker: str, lease_s: float) -> bool:
        """Start a queued job on `worker` with a lease of `lease_s`; False when it is not queued."""
        now = time.time()
        with self._db(write=True) as db:
            cursor = db.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.status == "queued")
                .values(
                    status="running",
                    worker=worker,
                    attempts=jobs.c.attempts + 1,
                    started_at=now,
                    lease_until=now + lease_s,
                )
            )
        return cursor.rowcount == 1

    def renew_lease(self, job_id: str, worker: str, lease_s: float) -> Lease:
        with self._db(write=True) as db:
            cursor = db.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.worker == worker, jobs.c.status == "running")
                .values(lease_until=time.time() + lease_s)
            )
            cancel = db.execute(
                select(jobs.c.cancel_requested).where(jobs.c.id == job_id)
            ).scalar_one_or_none()
        return Lease(held=cursor.rowcount == 1, cancel_requested=bool(cancel))

    def queued_job_ids(self, created_before: float | None = None) -> list[str]:
        """The queued jobs, oldest first; given `created_before`, only those created before then."""
        waiting = jobs.c.status == "queued"
        if created_before is not None:
            waiting &= jobs.c.created_at < created_before
        with self._db() as db:
            rows = db.execute(
                select(jobs.c.id).where(waiting).order_by(*insertion_order(jobs))
            ).scalars()
            return list(rows)

    def request_cancel(self, job_id: str) -> None:
        """Ask whichever worker runs the job to stop: it reads the flag when it renews its lease."""
        with self._db(write=True) as db:
            db.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.status.in_(ACTIVE))
                .values(cancel_requested=1)
            )

    def hand_back(self, job_id: str, worker: str) -> bool:
        """A worker that is told to stop puts its running job back in the queue, unless it was cancelled."""
        with self._db(write=True) as db:
            cursor = db.execute(
                update(jobs)
                .where(
                    jobs.c.id == job_id,
                    jobs.c.worker == worker,
                    jobs.c.status == "running",
                    jobs.c.cancel_requested == 0,
                )
                .values(status="queued", worker=None, lease_until=None)
            )
        return cursor.rowcount == 1

    def reap_expired(self, max_lost: int) -> list[LostJob]:
        """Take back every running job whose lease expired: queued again, or cancelled when that
        was asked, or failed once `max_lost` workers were lost running it."""
        now = time.time()
        lost: list[LostJob] = []
        expired = (
            select(
                jobs.c.id,
                jobs.c.worker,
                jobs.c.attempts,
                jobs.c.lost_workers,
                jobs.c.cancel_requested,
            )
            .where(
                jobs.c.status == "running",
                jobs.c.lease_until.is_not(None),
                jobs.c.lease_until < now,
            )
            # On PostgreSQL two reapers each take the jobs the other has not locked: none twice.
            .with_for_update(skip_locked=True)
        )
        with self._db(write=True) as db:
            for job_id, worker, attempts, lost_workers, cancel in db.execute(expired).all():
                count = lost_workers + 1
                if cancel:
                    outcome, status, error = LostOutcome.CANCELLED, "cancelled", None
                elif count >= max_lost:
                    outcome, status = LostOutcome.FAILED, "failed"
                    error = too_many_lost_workers(count, worker)
                else:
                    outcome, status, error = LostOutcome.REQUEUED, "queued", None
                requeued = outcome is LostOutcome.REQUEUED
                db.execute(
                    update(jobs)
                    .where(jobs.c.id == job_id)
                    .values(
                        status=status,
                        error=error,
                        finished_at=None if requeued else now,
                        lost_workers=count,
                        worker=None if requeued else worker,
                        lease_until=None,
                    )
                )
                lost.append(LostJob(job_id, worker, attempts, count, outcome))
        return lost
