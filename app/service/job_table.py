"""Jobs and their events in the database: queued on a snapshot of the images, one active per project."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from app.engine.dataset import check_minimums
from app.engine.errors import Conflict, NotFound
from app.engine.params import TrainParams
from app.service.job_leases import JobLeases
from app.service.records import Job, JobKind, JobStatus, StoredEvent, is_id, new_id
from app.service.schema import JOB_COLUMNS, job_from_row

# Who runs a job in the embedded default: the web process's own worker thread.
IN_PROCESS_WORKER = "in-process"


class JobTable(JobLeases):
    """The jobs and job_events tables; the Store adds projects, classes, images and their files."""

    def create_job(
        self, project_id: str, params: TrainParams, kind: JobKind = JobKind.TRAIN
    ) -> Job:
        """Queue a job on a snapshot of the project's images, unless one is active or data is missing."""
        with self._db(write=True) as db:
            self.refuse_while_training(db, project_id, "start another", already=True)
            labels = [
                row[0]
                for row in db.execute(
                    "SELECT name FROM classes WHERE project_id = ? ORDER BY created_at, rowid",
                    (project_id,),
                )
            ]
            items = db.execute(
                "SELECT i.stored_name, c.name FROM images i JOIN classes c ON c.id = i.class_id "
                "WHERE i.project_id = ? ORDER BY i.created_at, i.rowid",
                (project_id,),
            ).fetchall()
            counts = dict.fromkeys(labels, 0)
            for _, name in items:
                counts[name] += 1
            check_minimums(counts)
            job = Job(
                id=new_id(),
                project_id=project_id,
                status=JobStatus.QUEUED,
                params=params,
                labels=labels,
                image_count=len(items),
                created_at=time.time(),
                kind=kind,
            )
            db.execute(
                "INSERT INTO jobs (id, project_id, status, params, labels, image_count, snapshot, created_at, kind) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job.id,
                    project_id,
                    job.status,
                    params.model_dump_json(),
                    json.dumps(labels),
                    len(items),
                    json.dumps([list(item) for item in items]),
                    job.created_at,
                    kind,
                ),
            )
        return job

    def add_finished_job(self, job: Job, items: list[tuple[str, str]]) -> None:
        """Record a job that already succeeded elsewhere (a project bundle's model): its model zip
        is written first, at the path the job names, so the row never points at nothing."""
        with self._db(write=True) as db:
            db.execute(
                "INSERT INTO jobs (id, project_id, status, params, labels, image_count, snapshot, metrics, created_at, started_at, finished_at, kind) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job.id,
                    job.project_id,
                    job.status,
                    job.params.model_dump_json(),
                    json.dumps(job.labels),
                    job.image_count,
                    json.dumps([list(item) for item in items]),
                    json.dumps(job.metrics) if job.metrics is not None else None,
                    job.created_at,
                    job.started_at,
                    job.finished_at,
                    job.kind,
                ),
            )

    def refuse_while_training(
        self, db: sqlite3.Connection, project_id: str, action: str, already: bool = False
    ) -> None:
        row = db.execute(
            "SELECT id, status FROM jobs WHERE project_id = ? AND status IN ('queued', 'running')",
            (project_id,),
        ).fetchone()
        if row is None:
            return
        if already:
            raise Conflict(
                f"Job {row['id']} is already {row['status']} for this project. Wait for it to finish or cancel it, then {action}."
            )
        raise Conflict(
            f"Job {row['id']} is {row['status']} on this project's images. Wait for it to finish or cancel it, then {action} again."
        )

    def job_snapshot(self, job: Job) -> list[tuple[str, str]]:
        """The (stored image name, class name) pairs the job was submitted with."""
        with self._db() as db:
            row = db.execute("SELECT snapshot FROM jobs WHERE id = ?", (job.id,)).fetchone()
        return [(stored_name, name) for stored_name, name in json.loads(row[0])]

    def get_job(self, job_id: str) -> Job | None:
        if not is_id(job_id):
            return None
        with self._db() as db:
            row = db.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return job_from_row(row) if row else None

    def list_jobs(self, project_id: str) -> list[Job]:
        with self._db() as db:
            rows = db.execute(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE project_id = ? ORDER BY created_at DESC, rowid DESC",
                (project_id,),
            ).fetchall()
        return [job_from_row(row) for row in rows]

    def active_job(self, project_id: str) -> Job | None:
        with self._db() as db:
            row = db.execute(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE project_id = ? AND status IN ('queued', 'running')",
                (project_id,),
            ).fetchone()
        return job_from_row(row) if row else None

    def latest_model_job(self, project_id: str) -> Job | None:
        """The project's model: the latest succeeded training or kept comparison result, by when it
        finished or was kept (keeping an older comparison's model makes it the project's model)."""
        with self._db() as db:
            row = db.execute(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE project_id = ? AND status = 'succeeded' "
                "AND (kind = 'train' OR kept_mode IS NOT NULL) "
                "ORDER BY COALESCE(kept_at, finished_at) DESC, rowid DESC LIMIT 1",
                (project_id,),
            ).fetchone()
        return job_from_row(row) if row else None

    def keep_mode(self, job_id: str, mode: str) -> None:
        """Make one of a succeeded comparison's models the project's model."""
        with self._db(write=True) as db:
            cursor = db.execute(
                "UPDATE jobs SET kept_mode = ?, kept_at = ? WHERE id = ? AND kind = 'compare' AND status = 'succeeded'",
                (mode, time.time(), job_id),
            )
        if cursor.rowcount == 0:
            raise NotFound("The job was deleted meanwhile, with its project. List the jobs again.")

    def start_job(self, job_id: str, worker: str = IN_PROCESS_WORKER) -> bool:
        """Move a queued job to running; False when it is no longer queued (e.g. cancelled)."""
        with self._db(write=True) as db:
            cursor = db.execute(
                "UPDATE jobs SET status = 'running', started_at = ?, worker = ?, attempts = attempts + 1 "
                "WHERE id = ? AND status = 'queued'",
                (time.time(), worker, job_id),
            )
        return cursor.rowcount == 1

    def finish_job(
        self,
        job_id: str,
        status: JobStatus,
        metrics: dict[str, Any] | None = None,
        error: str | None = None,
        worker: str | None = None,
    ) -> bool:
        """Record the end of an active job; False when it had already ended, or, given `worker`,
        when that worker no longer holds it (its lease expired and the job went back to the queue)."""
        with self._db(write=True) as db:
            cursor = db.execute(
                "UPDATE jobs SET status = ?, metrics = ?, error = ?, finished_at = ?, lease_until = NULL "
                "WHERE id = ? AND status IN ('queued', 'running') AND (? IS NULL OR worker = ?)",
                (
                    status,
                    json.dumps(metrics) if metrics is not None else None,
                    error,
                    time.time(),
                    job_id,
                    worker,
                    worker,
                ),
            )
        return cursor.rowcount == 1

    def cancel_queued(self, job_id: str) -> bool:
        """Cancel a job that has not started; False when it is no longer queued."""
        with self._db(write=True) as db:
            cursor = db.execute(
                "UPDATE jobs SET status = 'cancelled', finished_at = ? WHERE id = ? AND status = 'queued'",
                (time.time(), job_id),
            )
        return cursor.rowcount == 1

    def interrupt_unfinished(self, error: str) -> list[str]:
        """Mark every queued or running job interrupted (at start-up: nothing runs them any more)."""
        with self._db(write=True) as db:
            ids = [
                row[0]
                for row in db.execute("SELECT id FROM jobs WHERE status IN ('queued', 'running')")
            ]
            db.execute(
                "UPDATE jobs SET status = 'interrupted', error = ?, finished_at = ? WHERE status IN ('queued', 'running')",
                (error, time.time()),
            )
        return ids

    def add_event(self, job_id: str, seq: int, event_type: str, data: str) -> None:
        with self._db(write=True) as db:
            db.execute(
                "INSERT INTO job_events (job_id, seq, type, data) VALUES (?, ?, ?, ?)",
                (job_id, seq, event_type, data),
            )

    def add_next_event(self, job_id: str, event_type: str, data: str) -> int:
        """Append an event with the next id, chosen in the same transaction: for logs that several
        processes append to (a worker, a web process cancelling, a reaper)."""
        with self._db(write=True) as db:
            row = db.execute(
                "INSERT INTO job_events (job_id, seq, type, data) "
                "SELECT ?, COALESCE(MAX(seq), 0) + 1, ?, ? FROM job_events WHERE job_id = ? "
                "RETURNING seq",
                (job_id, event_type, data, job_id),
            ).fetchone()
        return int(row[0])

    def events_after(self, job_id: str, after: int) -> list[StoredEvent]:
        with self._db() as db:
            rows = db.execute(
                "SELECT seq, type, data FROM job_events WHERE job_id = ? AND seq > ? ORDER BY seq",
                (job_id, after),
            ).fetchall()
        return [StoredEvent(seq=row[0], type=row[1], data=row[2]) for row in rows]

    def last_event_seq(self, job_id: str) -> int:
        with self._db() as db:
            return int(
                db.execute(
                    "SELECT COALESCE(MAX(seq), 0) FROM job_events WHERE job_id = ?", (job_id,)
                ).fetchone()[0]
            )
