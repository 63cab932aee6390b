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

from app.service.database import Database


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
                "UPDATE jobs SET status = 'running', worker = ?, attempts = attempts + 1, "
                "started_at = ?, lease_until = ? WHERE id = ? AND status = 'queued'",
                (worker, now, now + lease_s, job_id),
            )
        return cursor.rowcount == 1

    def renew_lease(self, job_id: str, worker: str, lease_s: float) -> Lease:
        with self._db(write=True) as db:
            cursor = db.execute(
                "UPDATE jobs SET lease_until = ? WHERE id = ? AND worker = ? AND status = 'running'",
                (time.time() + lease_s, job_id, worker),
            )
            row = db.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return Lease(held=cursor.rowcount == 1, cancel_requested=bool(row and row[0]))

    def queued_job_ids(self) -> list[str]:
        with self._db() as db:
            rows = db.execute(
                "SELECT id FROM jobs WHERE status = 'queued' ORDER BY created_at, rowid"
            ).fetchall()
        return [row[0] for row in rows]

    def request_cancel(self, job_id: str) -> None:
        """Ask whichever worker runs the job to stop: it reads the flag when it renews its lease."""
        with self._db(write=True) as db:
            db.execute(
                "UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND status IN ('queued', 'running')",
                (job_id,),
            )

    def hand_back(self, job_id: str, worker: str) -> bool:
        """A worker that is told to stop puts its running job back in the queue, unless it was cancelled."""
        with self._db(write=True) as db:
            cursor = db.execute(
                "UPDATE jobs SET status = 'queued', worker = NULL, lease_until = NULL "
                "WHERE id = ? AND worker = ? AND status = 'running' AND cancel_requested = 0",
                (job_id, worker),
            )
        return cursor.rowcount == 1

    def reap_expired(self, max_lost: int) -> list[LostJob]:
        """Take back every running job whose lease expired: queued again, or cancelled when that
        was asked, or failed once `max_lost` workers were lost running it."""
        now = time.time()
        lost: list[LostJob] = []
        with self._db(write=True) as db:
            rows = db.execute(
                "SELECT id, worker, attempts, lost_workers, cancel_requested FROM jobs "
                "WHERE status = 'running' AND lease_until IS NOT NULL AND lease_until < ?",
                (now,),
            ).fetchall()
            for job_id, worker, attempts, lost_workers, cancel in rows:
                count = lost_workers + 1
                if cancel:
                    outcome, status, error = LostOutcome.CANCELLED, "cancelled", None
                elif count >= max_lost:
                    outcome, status = LostOutcome.FAILED, "failed"
                    error = too_many_lost_workers(count, worker)
                else:
                    outcome, status, error = LostOutcome.REQUEUED, "queued", None
                finished = None if outcome is LostOutcome.REQUEUED else now
                db.execute(
                    "UPDATE jobs SET status = ?, error = ?, finished_at = ?, lost_workers = ?, "
                    "worker = CASE WHEN ? = 'queued' THEN NULL ELSE worker END, lease_until = NULL "
                    "WHERE id = ?",
                    (status, error, finished, count, status, job_id),
                )
                lost.append(LostJob(job_id, worker, attempts, count, outcome))
        return lost
