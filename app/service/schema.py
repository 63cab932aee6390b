"""The schema from before Alembic (what a data dir made by that code holds: migrate.py stamps such
files), and the queries that read rows back as records."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import RowMapping, Select, func, select

from app.engine.params import TrainParams
from app.service.records import (
    Job,
    JobKind,
    JobStatus,
    StoredImage,
)
from app.service.tables import classes, images, jobs, projects

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE COLLATE NOCASE, password_hash TEXT NOT NULL,
    admin INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS credentials (
    id TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind TEXT NOT NULL, digest TEXT NOT NULL UNIQUE, name TEXT, created_at REAL NOT NULL,
    expires_at REAL);
CREATE INDEX IF NOT EXISTS credentials_by_user ON credentials (user_id, kind);
CREATE TABLE IF NOT EXISTS join_codes (
    id TEXT PRIMARY KEY, digest TEXT NOT NULL UNIQUE,
    created_by TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE, created_at REAL NOT NULL,
    expires_at REAL NOT NULL, uses INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS projects (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS classes (
    id TEXT PRIMARY KEY, project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name TEXT NOT NULL, created_at REAL NOT NULL, UNIQUE (project_id, name));
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY, project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    class_id TEXT NOT NULL REFERENCES classes(id) ON DELETE CASCADE, filename TEXT NOT NULL,
    stored_name TEXT NOT NULL, sha256 TEXT NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL,
    size_bytes INTEGER NOT NULL, created_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS images_by_class ON images (class_id, created_at);
CREATE INDEX IF NOT EXISTS images_by_project ON images (project_id);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    status TEXT NOT NULL, params TEXT NOT NULL, labels TEXT NOT NULL, image_count INTEGER NOT NULL,
    snapshot TEXT NOT NULL, metrics TEXT, error TEXT, created_at REAL NOT NULL, started_at REAL,
    finished_at REAL);
CREATE UNIQUE INDEX IF NOT EXISTS one_active_job_per_project ON jobs (project_id)
    WHERE status IN ('queued', 'running');
CREATE INDEX IF NOT EXISTS jobs_by_project ON jobs (project_id, created_at);
CREATE TABLE IF NOT EXISTS shares (
    project_id TEXT PRIMARY KEY REFERENCES projects(id) ON DELETE CASCADE,
    token TEXT NOT NULL UNIQUE, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS job_events (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE, seq INTEGER NOT NULL,
    type TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (job_id, seq));
"""


def json_or_none(text: str | None) -> Any:
    return json.loads(text) if text is not None else None


def job_from_row(row: RowMapping) -> Job:
    return Job(
        id=row["id"],
        project_id=row["project_id"],
        status=JobStatus(row["status"]),
        params=TrainParams.model_validate_json(row["params"]),
        labels=json.loads(row["labels"]),
        image_count=row["image_count"],
        metrics=json_or_none(row["metrics"]),
        error=row["error"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        kind=JobKind(row["kind"]),
        kept_mode=row["kept_mode"],
        worker=row["worker"],
        attempts=row["attempts"],
    )


def image_from_row(row: RowMapping) -> StoredImage:
    return StoredImage(**dict(row))


JOB_COLUMNS = (
    jobs.c.id,
    jobs.c.project_id,
    jobs.c.status,
    jobs.c.params,
    jobs.c.labels,
    jobs.c.image_count,
    jobs.c.metrics,
    jobs.c.error,
    jobs.c.created_at,
    jobs.c.started_at,
    jobs.c.finished_at,
    jobs.c.kind,
    jobs.c.kept_mode,
    jobs.c.worker,
    jobs.c.attempts,
)


# Added after the first release: a comparison job, and the model a user kept from it (and when).
JOB_MIGRATIONS = {
    "kind": "ALTER TABLE jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'train'",
    "kept_mode": "ALTER TABLE jobs ADD COLUMN kept_mode TEXT",
    "kept_at": "ALTER TABLE jobs ADD COLUMN kept_at REAL",
    # Workers in other processes: who runs the job, how often it was started, the lease the
    # running worker keeps renewing, a cancel asked from any web process, and the workers lost.
    "worker": "ALTER TABLE jobs ADD COLUMN worker TEXT",
    "attempts": "ALTER TABLE jobs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0",
    "lease_until": "ALTER TABLE jobs ADD COLUMN lease_until REAL",
    "cancel_requested": "ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0",
    "lost_workers": "ALTER TABLE jobs ADD COLUMN lost_workers INTEGER NOT NULL DEFAULT 0",
}


# Added with accounts: who owns a project (NULL for projects made without accounts, or whose
# owner was removed: only admins see those).
PROJECT_MIGRATIONS = {
    "owner_id": "ALTER TABLE projects ADD COLUMN owner_id TEXT REFERENCES users(id) ON DELETE SET NULL",
}


def project_query() -> Select[Any]:
    """Projects with how many classes and images each has."""
    class_count = (
        select(func.count()).where(classes.c.project_id == projects.c.id).scalar_subquery()
    )
    image_count = select(func.count()).where(images.c.project_id == projects.c.id).scalar_subquery()
    return select(
        projects.c.id,
        projects.c.name,
        projects.c.created_at,
        projects.c.owner_id,
        class_count.label("class_count"),
        image_count.label("image_count"),
    )


def class_query() -> Select[Any]:
    """Classes with how many images each has."""
    image_count = select(func.count()).where(images.c.class_id == classes.c.id).scalar_subquery()
    return select(
        classes.c.id,
        classes.c.project_id,
        classes.c.name,
        classes.c.created_at,
        image_count.label("image_count"),
    )


IMAGE_COLUMNS = (
    images.c.id,
    images.c.project_id,
    images.c.class_id,
    images.c.filename,
    images.c.stored_name,
    images.c.sha256,
    images.c.width,
    images.c.height,
    images.c.size_bytes,
    images.c.created_at,
)
