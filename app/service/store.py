"""Projects, classes, images and jobs: metadata in SQLite, files under the data dir, written atomically.

Layout under DATA_DIR: `teachbox.sqlite`, and per project `projects/<id>/images/<image id>.<ext>`
(the uploaded bytes), `thumbnails/<image id>.jpg` (re-encoded by us) and `models/<job id>.zip`.
Files are written before the row that names them is committed, so a row never points at nothing.
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import shutil
import sqlite3
import threading
import time
import unicodedata
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from PIL import Image

from app.engine.dataset import check_minimums
from app.engine.embeddings import content_hash
from app.engine.errors import TeachboxError
from app.engine.images import ACCEPTED_FORMATS, decode_image
from app.engine.params import TrainParams

THUMBNAIL_SIZE = 256
THUMBNAIL_QUALITY = 85
DOWNLOAD_QUALITY = 92
MAX_FILENAME = 200
SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp", "GIF": ".gif"}
_ID = re.compile(r"[0-9a-f]{32}")
# EXIF orientations 5-8 rotate by 90 degrees, so the upright image has width and height swapped.
_TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})

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
CREATE TABLE IF NOT EXISTS job_events (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE, seq INTEGER NOT NULL,
    type TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (job_id, seq));
"""


class JobKind(StrEnum):
    TRAIN = "train"
    COMPARE = "compare"


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


ACTIVE_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})


@dataclass(frozen=True)
class Project:
    id: str
    name: str
    created_at: float
    class_count: int = 0
    image_count: int = 0


@dataclass(frozen=True)
class ImageClass:
    id: str
    project_id: str
    name: str
    created_at: float
    image_count: int = 0


@dataclass(frozen=True)
class StoredImage:
    id: str
    project_id: str
    class_id: str
    filename: str
    stored_name: str
    sha256: str
    width: int
    height: int
    size_bytes: int
    created_at: float


@dataclass(frozen=True)
class Job:
    id: str
    project_id: str
    status: JobStatus
    params: TrainParams
    labels: list[str]
    image_count: int
    metrics: dict[str, Any] | None
    error: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    kind: JobKind = JobKind.TRAIN
    kept_mode: str | None = None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES


@dataclass(frozen=True)
class StoredEvent:
    seq: int
    type: str
    data: str


@dataclass(frozen=True)
class PreparedImage:
    """An accepted upload: its original bytes, what they are, and our re-encoded thumbnail."""

    data: bytes
    suffix: str
    width: int
    height: int
    sha256: str
    thumbnail: bytes


def new_id() -> str:
    return uuid.uuid4().hex


def is_id(value: str) -> bool:
    return _ID.fullmatch(value) is not None


def clean_filename(raw: str | None) -> str:
    """The last path component of an uploaded name, without control or bidi characters, shortened."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if not unicodedata.category(ch).startswith("C")).strip()
    return name[:MAX_FILENAME] or "image"


def jpeg_bytes(image: Image.Image, quality: int) -> bytes:
    """The pixels alone as JPEG: Pillow would otherwise copy an uploaded comment (GIF, JPEG) along."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, comment=b"")
    return buffer.getvalue()


def _upright_size(header: Image.Image) -> tuple[int, int]:
    orientation = header.getexif().get(0x0112, 1)
    return (
        (header.height, header.width) if orientation in _TRANSPOSING_ORIENTATIONS else header.size
    )


def prepare_image(data: bytes, max_pixels: int) -> PreparedImage:
    """Validate and fully decode an upload (raises ImageRejected) and make its thumbnail."""
    image = decode_image(data, max_pixels, draft_shorter_side=THUMBNAIL_SIZE)
    header = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    width, height = _upright_size(header)
    image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    thumbnail = jpeg_bytes(image, THUMBNAIL_QUALITY)
    return PreparedImage(
        data, SUFFIXES[str(header.format)], width, height, content_hash(data), thumbnail
    )


def reencode(path: Path, max_pixels: int) -> bytes:
    """A stored image decoded and written again as JPEG, so that served bytes are always ours."""
    return jpeg_bytes(decode_image(path, max_pixels), DOWNLOAD_QUALITY)


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, flush it to disk, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        with partial.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        partial.replace(path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise TeachboxError(
                "The server's disk is full. Free some space or delete old projects, then try again.",
                507,
            ) from None
        raise


def _json_or_none(text: str | None) -> Any:
    return json.loads(text) if text is not None else None


def _job(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"],
        project_id=row["project_id"],
        status=JobStatus(row["status"]),
        params=TrainParams.model_validate_json(row["params"]),
        labels=json.loads(row["labels"]),
        image_count=row["image_count"],
        metrics=_json_or_none(row["metrics"]),
        error=row["error"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        kind=JobKind(row["kind"]),
        kept_mode=row["kept_mode"],
    )


def _image(row: sqlite3.Row) -> StoredImage:
    return StoredImage(**dict(row))


_JOB_COLUMNS = "id, project_id, status, params, labels, image_count, metrics, error, created_at, started_at, finished_at, kind, kept_mode"
# Added after the first release: a comparison job, and the model a user kept from it (and when).
_JOB_MIGRATIONS = {
    "kind": "ALTER TABLE jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'train'",
    "kept_mode": "ALTER TABLE jobs ADD COLUMN kept_mode TEXT",
    "kept_at": "ALTER TABLE jobs ADD COLUMN kept_at REAL",
}
_PROJECT_QUERY = """
SELECT p.id, p.name, p.created_at,
       (SELECT COUNT(*) FROM classes c WHERE c.project_id = p.id) AS class_count,
       (SELECT COUNT(*) FROM images i WHERE i.project_id = p.id) AS image_count
FROM projects p"""
_CLASS_QUERY = """
SELECT c.id, c.project_id, c.name, c.created_at,
       (SELECT COUNT(*) FROM images i WHERE i.class_id = c.id) AS image_count
FROM classes c"""
_IMAGE_COLUMNS = (
    "id, project_id, class_id, filename, stored_name, sha256, width, height, size_bytes, created_at"
)


class Store:
    """All metadata and files of one data dir. Thread-safe: every call opens its own connection."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.projects_dir = data_dir / "projects"
        self.projects_dir.mkdir(parents=True, exist_ok=True)
        self.db_path = data_dir / "teachbox.sqlite"
        self._local = threading.local()
        with self._db() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
            for column, statement in _JOB_MIGRATIONS.items():
                if column not in columns:
                    db.execute(statement)

    @contextmanager
    def _db(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        """This thread's connection; with `write`, one immediate transaction, so check-then-act is
        race-free. Store methods never nest these blocks, so one connection per thread suffices."""
        db = self._connection()
        try:
            if write:
                db.execute("BEGIN IMMEDIATE")
            yield db
            if write:
                db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _connection(self) -> sqlite3.Connection:
        """Opened once per thread: opening one per query cost about 0.3 ms, a tenth of a predict."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    # Files

    def project_dir(self, project_id: str) -> Path:
        return self.projects_dir / project_id

    def image_path(self, image: StoredImage) -> Path:
        return self.project_dir(image.project_id) / "images" / image.stored_name

    def thumbnail_path(self, image: StoredImage) -> Path:
        return self.project_dir(image.project_id) / "thumbnails" / f"{image.id}.jpg"

    def model_path(self, job: Job, mode: str | None = None) -> Path:
        """A training's model zip; for a comparison, the zip of `mode`, else of the kept or recommended mode."""
        if job.kind is JobKind.COMPARE:
            chosen = mode or job.kept_mode or (job.metrics or {}).get("recommendation", "transfer")
            return self.compare_dir(job) / f"{chosen}.zip"
        return self.project_dir(job.project_id) / "models" / f"{job.id}.zip"

    def compare_dir(self, job: Job) -> Path:
        """Where a comparison writes transfer.zip, finetune.zip and report.json."""
        return self.project_dir(job.project_id) / "models" / job.id

    def sweep(self) -> None:
        """Remove what a crash can leave behind: partial files, half-written model exports, and
        image files no row names."""
        for partial in self.projects_dir.glob("*/*/.*.partial"):
            partial.unlink(missing_ok=True)
        for scratch in self.projects_dir.glob("*/models/.export-*"):
            shutil.rmtree(scratch, ignore_errors=True)
        with self._db() as db:
            known = {row[0] for row in db.execute("SELECT id FROM images")}
            projects = [row[0] for row in db.execute("SELECT id FROM projects")]
        for project_id in projects:
            for folder in ("images", "thumbnails"):
                for path in (self.project_dir(project_id) / folder).glob("*"):
                    if path.name.split(".", 1)[0] not in known:
                        path.unlink(missing_ok=True)

    # Projects

    def create_project(self, name: str) -> Project:
        project = Project(new_id(), name, time.time())
        with self._db(write=True) as db:
            db.execute(
                "INSERT INTO projects (id, name, created_at) VALUES (?, ?, ?)",
                (project.id, name, project.created_at),
            )
        return project

    def list_projects(self) -> list[Project]:
        with self._db() as db:
            rows = db.execute(_PROJECT_QUERY + " ORDER BY p.created_at, p.rowid").fetchall()
        return [Project(**dict(row)) for row in rows]

    def get_project(self, project_id: str) -> Project | None:
        if not is_id(project_id):
            return None
        with self._db() as db:
            row = db.execute(_PROJECT_QUERY + " WHERE p.id = ?", (project_id,)).fetchone()
        return Project(**dict(row)) if row else None

    def rename_project(self, project_id: str, name: str) -> None:
        with self._db(write=True) as db:
            db.execute("UPDATE projects SET name = ? WHERE id = ?", (name, project_id))

    def delete_project(self, project_id: str) -> None:
        with self._db(write=True) as db:
            self._refuse_while_training(db, project_id, "delete the project")
            db.execute("DELETE FROM projects WHERE id = ?", (project_id,))
        shutil.rmtree(self.project_dir(project_id), ignore_errors=True)

    # Classes

    def create_class(self, project_id: str, name: str) -> ImageClass:
        image_class = ImageClass(new_id(), project_id, name, time.time())
        with self._db(write=True) as db:
            self._insert_class(db, image_class)
        return image_class

    def _insert_class(self, db: sqlite3.Connection, image_class: ImageClass) -> None:
        try:
            db.execute(
                "INSERT INTO classes (id, project_id, name, created_at) VALUES (?, ?, ?, ?)",
                (image_class.id, image_class.project_id, image_class.name, image_class.created_at),
            )
        except sqlite3.IntegrityError:
            raise _duplicate_class(image_class.name) from None

    def class_named(self, project_id: str, name: str) -> ImageClass:
        """The project's class with this name, created when there is none (for imports)."""
        with self._db(write=True) as db:
            row = db.execute(
                _CLASS_QUERY + " WHERE c.project_id = ? AND c.name = ?", (project_id, name)
            ).fetchone()
            if row:
                return ImageClass(**dict(row))
            image_class = ImageClass(new_id(), project_id, name, time.time())
            self._insert_class(db, image_class)
        return image_class

    def list_classes(self, project_id: str) -> list[ImageClass]:
        with self._db() as db:
            rows = db.execute(
                _CLASS_QUERY + " WHERE c.project_id = ? ORDER BY c.created_at, c.rowid",
                (project_id,),
            ).fetchall()
        return [ImageClass(**dict(row)) for row in rows]

    def get_class(self, project_id: str, class_id: str) -> ImageClass | None:
        if not is_id(class_id):
            return None
        with self._db() as db:
            row = db.execute(
                _CLASS_QUERY + " WHERE c.project_id = ? AND c.id = ?", (project_id, class_id)
            ).fetchone()
        return ImageClass(**dict(row)) if row else None

    def rename_class(self, image_class: ImageClass, name: str) -> None:
        with self._db(write=True) as db:
            try:
                db.execute("UPDATE classes SET name = ? WHERE id = ?", (name, image_class.id))
            except sqlite3.IntegrityError:
                raise _duplicate_class(name) from None

    def delete_class(self, image_class: ImageClass) -> None:
        with self._db(write=True) as db:
            self._refuse_while_training(db, image_class.project_id, "delete the class")
            rows = db.execute(
                f"SELECT {_IMAGE_COLUMNS} FROM images WHERE class_id = ?", (image_class.id,)
            ).fetchall()
            db.execute("DELETE FROM classes WHERE id = ?", (image_class.id,))
        for row in rows:
            self._remove_files(_image(row))

    # Images

    def add_image(
        self, image_class: ImageClass, filename: str, prepared: PreparedImage
    ) -> StoredImage:
        image_id = new_id()
        image = StoredImage(
            image_id,
            image_class.project_id,
            image_class.id,
            clean_filename(filename),
            image_id + prepared.suffix,
            prepared.sha256,
            prepared.width,
            prepared.height,
            len(prepared.data),
            time.time(),
        )
        write_atomic(self.image_path(image), prepared.data)
        write_atomic(self.thumbnail_path(image), prepared.thumbnail)
        try:
            with self._db(write=True) as db:
                db.execute(
                    f"INSERT INTO images ({_IMAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        image.id,
                        image.project_id,
                        image.class_id,
                        image.filename,
                        image.stored_name,
                        image.sha256,
                        image.width,
                        image.height,
                        image.size_bytes,
                        image.created_at,
                    ),
                )
        except sqlite3.IntegrityError:
            self._remove_files(image)
            raise TeachboxError(
                "The class was deleted while its images were uploading. Create it again and upload them.",
                404,
            ) from None
        return image

    def list_images(self, project_id: str, class_id: str | None = None) -> list[StoredImage]:
        query = f"SELECT {_IMAGE_COLUMNS} FROM images WHERE project_id = ?"
        args: tuple[str, ...] = (project_id,)
        if class_id is not None:
            query, args = query + " AND class_id = ?", (project_id, class_id)
        with self._db() as db:
            rows = db.execute(query + " ORDER BY created_at, rowid", args).fetchall()
        return [_image(row) for row in rows]

    def get_image(self, project_id: str, image_id: str) -> StoredImage | None:
        if not is_id(image_id):
            return None
        with self._db() as db:
            row = db.execute(
                f"SELECT {_IMAGE_COLUMNS} FROM images WHERE project_id = ? AND id = ?",
                (project_id, image_id),
            ).fetchone()
        return _image(row) if row else None

    def delete_image(self, image: StoredImage) -> None:
        with self._db(write=True) as db:
            self._refuse_while_training(db, image.project_id, "delete the image")
            db.execute("DELETE FROM images WHERE id = ?", (image.id,))
        self._remove_files(image)

    def _remove_files(self, image: StoredImage) -> None:
        self.image_path(image).unlink(missing_ok=True)
        self.thumbnail_path(image).unlink(missing_ok=True)

    # Jobs

    def create_job(
        self, project_id: str, params: TrainParams, kind: JobKind = JobKind.TRAIN
    ) -> Job:
        """Queue a job on a snapshot of the project's images, unless one is active or data is missing."""
        with self._db(write=True) as db:
            self._refuse_while_training(db, project_id, "start another", already=True)
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
                new_id(),
                project_id,
                JobStatus.QUEUED,
                params,
                labels,
                len(items),
                None,
                None,
                time.time(),
                None,
                None,
                kind,
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

    def _refuse_while_training(
        self, db: sqlite3.Connection, project_id: str, action: str, already: bool = False
    ) -> None:
        row = db.execute(
            "SELECT id, status FROM jobs WHERE project_id = ? AND status IN ('queued', 'running')",
            (project_id,),
        ).fetchone()
        if row is None:
            return
        if already:
            raise TeachboxError(
                f"Job {row['id']} is already {row['status']} for this project. Wait for it to finish or cancel it, then {action}.",
                409,
            )
        raise TeachboxError(
            f"Job {row['id']} is {row['status']} on this project's images. Wait for it to finish or cancel it, then {action} again.",
            409,
        )

    def job_items(self, job: Job) -> list[tuple[Path, str]]:
        """The (image file, class name) pairs the job was submitted with."""
        with self._db() as db:
            row = db.execute("SELECT snapshot FROM jobs WHERE id = ?", (job.id,)).fetchone()
        folder = self.project_dir(job.project_id) / "images"
        return [(folder / stored_name, name) for stored_name, name in json.loads(row[0])]

    def get_job(self, job_id: str) -> Job | None:
        if not is_id(job_id):
            return None
        with self._db() as db:
            row = db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _job(row) if row else None

    def list_jobs(self, project_id: str) -> list[Job]:
        with self._db() as db:
            rows = db.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE project_id = ? ORDER BY created_at DESC, rowid DESC",
                (project_id,),
            ).fetchall()
        return [_job(row) for row in rows]

    def active_job(self, project_id: str) -> Job | None:
        with self._db() as db:
            row = db.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE project_id = ? AND status IN ('queued', 'running')",
                (project_id,),
            ).fetchone()
        return _job(row) if row else None

    def latest_model_job(self, project_id: str) -> Job | None:
        """The project's model: the latest succeeded training or kept comparison result, by when it
        finished or was kept (keeping an older comparison's model makes it the project's model)."""
        with self._db() as db:
            row = db.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE project_id = ? AND status = 'succeeded' "
                "AND (kind = 'train' OR kept_mode IS NOT NULL) "
                "ORDER BY COALESCE(kept_at, finished_at) DESC, rowid DESC LIMIT 1",
                (project_id,),
            ).fetchone()
        return _job(row) if row else None

    def keep_mode(self, job_id: str, mode: str) -> None:
        """Make one of a succeeded comparison's models the project's model."""
        with self._db(write=True) as db:
            db.execute(
                "UPDATE jobs SET kept_mode = ?, kept_at = ? WHERE id = ? AND kind = 'compare' AND status = 'succeeded'",
                (mode, time.time(), job_id),
            )

    def start_job(self, job_id: str) -> bool:
        """Move a queued job to running; False when it is no longer queued (e.g. cancelled)."""
        with self._db(write=True) as db:
            cursor = db.execute(
                "UPDATE jobs SET status = 'running', started_at = ? WHERE id = ? AND status = 'queued'",
                (time.time(), job_id),
            )
        return cursor.rowcount == 1

    def finish_job(
        self,
        job_id: str,
        status: JobStatus,
        metrics: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> bool:
        """Record the end of an active job; False when it had already ended."""
        with self._db(write=True) as db:
            cursor = db.execute(
                "UPDATE jobs SET status = ?, metrics = ?, error = ?, finished_at = ? WHERE id = ? AND status IN ('queued', 'running')",
                (
                    status,
                    json.dumps(metrics) if metrics is not None else None,
                    error,
                    time.time(),
                    job_id,
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

    # Job events

    def add_event(self, job_id: str, seq: int, event_type: str, data: str) -> None:
        with self._db(write=True) as db:
            db.execute(
                "INSERT INTO job_events (job_id, seq, type, data) VALUES (?, ?, ?, ?)",
                (job_id, seq, event_type, data),
            )

    def events_after(self, job_id: str, after: int) -> list[StoredEvent]:
        with self._db() as db:
            rows = db.execute(
                "SELECT seq, type, data FROM job_events WHERE job_id = ? AND seq > ? ORDER BY seq",
                (job_id, after),
            ).fetchall()
        return [StoredEvent(*row) for row in rows]

    def last_event_seq(self, job_id: str) -> int:
        with self._db() as db:
            return int(
                db.execute(
                    "SELECT COALESCE(MAX(seq), 0) FROM job_events WHERE job_id = ?", (job_id,)
                ).fetchone()[0]
            )


def _duplicate_class(name: str) -> TeachboxError:
    return TeachboxError(
        f"This project already has a class named '{name}'. Choose another name.", 422
    )
