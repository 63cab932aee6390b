"""Jobs and their events in the database: queued on a snapshot of the images, one active per project."""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, literal, select, update

from app.engine.dataset import check_minimums
from app.engine.errors import Conflict, NotFound
from app.engine.params import TrainParams
from app.service.job_leases import JobLeases
from app.service.records import Job, JobKind, JobStatus, StoredEvent, is_id, new_id
from app.service.schema import JOB_COLUMNS, job_from_row
from app.service.tables import ACTIVE, classes, images, insertion_order, job_events, jobs, projects

# Who runs a job in the embedded default: the web process's own worker thread.
IN_PROCESS_WORKER = "in-process"


# Built once: the statements requests and event streams run (building one costs more than running it).
JOB_BY_ID = select(*JOB_COLUMNS).where(jobs.c.id == bindparam("job_id"))
ACTIVE_JOB = select(*JOB_COLUMNS).where(
    jobs.c.project_id == bindparam("project_id"), jobs.c.status.in_(ACTIVE)
)
LATEST_MODEL_JOB = (
    select(*JOB_COLUMNS)
    .where(
        jobs.c.project_id == bindparam("project_id"),
        jobs.c.status == "succeeded",
        (jobs.c.kind == "train") | jobs.c.kept_mode.is_not(None),
    )
    .order_by(func.coalesce(jobs.c.kept_at, jobs.c.finished_at).desc(), jobs.c.id.desc())
    .limit(1)
)
EVENTS_AFTER = (
    select(job_events.c.seq, job_events.c.type, job_events.c.data)
    .where(job_events.c.job_id == bindparam("job_id"), job_events.c.seq > bindparam("after"))
    .order_by(job_events.c.seq)
)


class JobTable(JobLeases):
    """The jobs and job_events tables; the Store adds projects, classes, images and their files."""

    def create_job(
        self, project_id: str, params: TrainParams, kind: JobKind = JobKind.TRAIN
    ) -> Job:
        """Queue a job on a snapshot of the project's images, unless one is active or data is missing."""
        with self._db(write=True) as db:
            self.lock_project(db, project_id)
            self.refuse_while_training(db, project_id, "start another", already=True)
            labels = list(
                db.execute(
                    select(classes.c.name)
                    .where(classes.c.project_id == project_id)
                    .order_by(*insertion_order(classes))
                ).scalars()
            )
            items = [
                (stored_name, name)
                for stored_name, name in db.execute(
                    select(images.c.stored_name, classes.c.name)
                    .join(classes, classes.c.id == images.c.class_id)
                    .where(images.c.project_id == project_id)
                    .order_by(*insertion_order(images))
                )
            ]
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
                insert(jobs).values(
                    id=job.id,
                    project_id=project_id,
                    status=job.status,
                    params=params.model_dump_json(),
                    labels=json.dumps(labels),
                    image_count=len(items),
                    snapshot=json.dumps([list(item) for item in items]),
                    created_at=job.created_at,
                    kind=kind,
                )
            )
        return job

    def add_finished_job(self, job: Job, items: list[tuple[str, str]]) -> None:
        """Record a job that already succeeded elsewhere (a project bundle's model): its model zip
        is written first, at the path the job names, so the row never points at nothing."""
        with self._db(write=True) as db:
            db.execute(
                insert(jobs).values(
                    id=job.id,
                    project_id=job.project_id,
                    status=job.status,
                    params=job.params.model_dump_json(),
                    labels=json.dumps(job.labels),
                    image_count=job.image_count,
                    snapshot=json.dumps([list(item) for item in items]),
                    metrics=json.dumps(job.metrics) if job.metrics is not None else None,
                    created_at=job.created_at,
                    started_at=job.started_at,
                    finished_at=job.finished_at,
                    kind=job.kind,
                )
            )

    def lock_project(self, db: Connection, project_id: str) -> None:
        """On PostgreSQL, hold the project's row until the transaction ends: a job cannot be queued
        on it between another transaction's check and act (SQLite's immediate transactions
        already hold the whole database)."""
        if self.postgres:
            db.execute(select(projects.c.id).where(projects.c.id == project_id).with_for_update())

    def refuse_while_training(
        self, db: Connection, project_id: str, action: str, already: bool = False
    ) -> None:
        row = db.execute(
            select(jobs.c.id, jobs.c.status).where(
                jobs.c.project_id == project_id, jobs.c.status.in_(ACTIVE)
            )
        ).first()
        if row is None:
            return
        if already:
            raise Conflict(
                f"Job {row.id} is already {row.status} for this project. Wait for it to finish or cancel it, then {action}."
            )
        raise Conflict(
            f"Job {row.id} is {row.status} on this project's images. Wait for it to finish or cancel it, then {action} again."
        )

    def job_snapshot(self, job: Job) -> list[tuple[str, str]]:
        """The (stored image name, class name) pairs the job was submitted with."""
        with self._db() as db:
            snapshot = db.execute(select(jobs.c.snapshot).where(jobs.c.id == job.id)).scalar_one()
        return [(stored_name, name) for stored_name, name in json.loads(snapshot)]

    def get_job(self, job_id: str) -> Job | None:
        if not is_id(job_id):
            return None
        with self._db() as db:
            row = db.execute(JOB_BY_ID, {"job_id": job_id}).mappings().first()
        return job_from_row(row) if row else None

    def list_jobs(self, project_id: str) -> list[Job]:
        newest_first = [column.desc() for column in insertion_order(jobs)]
        with self._db() as db:
            rows = db.execute(
                select(*JOB_COLUMNS).where(jobs.c.project_id == project_id).order_by(*newest_first)
            ).mappings()
            return [job_from_row(row) for row in rows]

    def active_job(self, project_id: str) -> Job | None:
        with self._db() as db:
            row = db.execute(ACTIVE_JOB, {"project_id": project_id}).mappings().first()
        return job_from_row(row) if row else None

    def latest_model_job(self, project_id: str) -> Job | None:
        """The project's model: the latest succeeded training or kept comparison result, by when it
        finished or was kept (keeping an older comparison's model makes it the project's model)."""
        with self._db() as db:
            row = db.execute(LATEST_MODEL_JOB, {"project_id": project_id}).mappings().first()
        return job_from_row(row) if row else None

    def keep_mode(self, job_id: str, mode: str) -> None:
        """Make one of a succeeded comparison's models the project's model."""
        with self._db(write=True) as db:
            cursor = db.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.kind == "compare", jobs.c.status == "succeeded")
                .values(kept_mode=mode, kept_at=time.time())
            )
        if cursor.rowcount == 0:
            raise NotFound("The job was deleted meanwhile, with its project. List the jobs again.")

    def start_job(self, job_id: str, worker: str = IN_PROCESS_WORKER) -> bool:
        """Move a queued job to running; False when it is no longer queued (e.g. cancelled)."""
        with self._db(write=True) as db:
            cursor = db.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.status == "queued")
                .values(
                    status="running",
                    started_at=time.time(),
                    worker=worker,
                    attempts=jobs.c.attempts + 1,
                )
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
        held = (jobs.c.id == job_id) & jobs.c.status.in_(ACTIVE)
        if worker is not None:
            held &= jobs.c.worker == worker
        with self._db(write=True) as db:
            cursor = db.execute(
                update(jobs)
                .where(held)
                .values(
                    status=status,
                    metrics=json.dumps(metrics) if metrics is not None else None,
                    error=error,
                    finished_at=time.time(),
                    lease_until=None,
                )
            )
        return cursor.rowcount == 1

    def cancel_queued(self, job_id: str) -> bool:
        """Cancel a job that has not started; False when it is no longer queued."""
        with self._db(write=True) as db:
            cursor = db.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.status == "queued")
                .values(status="cancelled", finished_at=time.time())
            )
        return cursor.rowcount == 1

    def interrupt_unfinished(self, error: str) -> list[str]:
        """Mark every queued or running job interrupted (at start-up: nothing runs them any more)."""
        with self._db(write=True) as db:
            ids = list(
                db.execute(
                    update(jobs)
                    .where(jobs.c.status.in_(ACTIVE))
                    .values(status="interrupted", error=error, finished_at=time.time())
                    .returning(jobs.c.id)
                ).scalars()
            )
        return ids

    def add_event(self, job_id: str, seq: int, event_type: str, data: str) -> None:
        with self._db(write=True) as db:
            db.execute(
                insert(job_events).values(job_id=job_id, seq=seq, type=event_type, data=data)
            )

    def add_next_event(self, job_id: str, event_type: str, data: str) -> int:
        """Append an event with the next id, chosen in the same transaction: for logs that several
        processes append to (a worker, a web process cancelling, a reaper)."""
        next_seq = select(
            literal(job_id),
            func.coalesce(func.max(job_events.c.seq), 0) + 1,
            literal(event_type),
            literal(data),
        ).where(job_events.c.job_id == job_id)
        with self._db(write=True) as db:
            # On PostgreSQL two appenders would read the same MAX(seq): the job's row, locked
            # first, lines them up (SQLite's immediate transaction already does).
            if self.postgres:
                db.execute(select(jobs.c.id).where(jobs.c.id == job_id).with_for_update())
            seq = db.execute(
                insert(job_events)
                .from_select(["job_id", "seq", "type", "data"], next_seq)
                .returning(job_events.c.seq)
            ).scalar_one()
        return int(seq)

    def events_after(self, job_id: str, after: int) -> list[StoredEvent]:
        with self._db() as db:
            rows = db.execute(EVENTS_AFTER, {"job_id": job_id, "after": after}).all()
        return [StoredEvent(seq=row.seq, type=row.type, data=row.data) for row in rows]

    def last_event_seq(self, job_id: str) -> int:
        with self._db() as db:
            return int(
                db.execute(
                    select(func.coalesce(func.max(job_events.c.seq), 0)).where(
                        job_events.c.job_id == job_id
                    )
                ).scalar_one()
            )
