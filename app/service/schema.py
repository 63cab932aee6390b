"""The SQLite schema, its migrations, and the queries that read rows back as records."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from app.engine.params import TrainParams
from app.service.records import (
    Job,
    JobKind,
    JobStatus,
    StoredImage,
)

SCHEMA = """
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


def job_from_row(row: sqlite3.Row) -> Job:
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


def image_from_row(row: sqlite3.Row) -> StoredImage:
    return StoredImage(**dict(row))


JOB_COLUMNS = "id, project_id, status, params, labels, image_count, metrics, error, created_at, started_at, finished_at, kind, kept_mode, worker, attempts"


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


PROJECT_QUERY = """
SELECT p.id, p.name, p.created_at,
       (SELECT COUNT(*) FROM classes c WHERE c.project_id = p.id) AS class_count,
       (SELECT COUNT(*) FROM images i WHERE i.project_id = p.id) AS image_count
FROM projects p"""


CLASS_QUERY = """
SELECT c.id, c.project_id, c.name, c.created_at,
       (SELECT COUNT(*) FROM images i WHERE i.class_id = c.id) AS image_count
FROM classes c"""


IMAGE_COLUMNS = (
    "id, project_id, class_id, filename, stored_name, sha256, width, height, size_bytes, created_at"
)
