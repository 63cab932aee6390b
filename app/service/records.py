"""What the store keeps, as typed records: projects, classes, images, jobs and their events."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from app.engine.params import TrainParams

_ID = re.compile(r"[0-9a-f]{32}")


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


@dataclass(frozen=True, kw_only=True)
class Project:
    id: str
    name: str
    created_at: float
    class_count: int = 0
    image_count: int = 0


@dataclass(frozen=True, kw_only=True)
class ImageClass:
    id: str
    project_id: str
    name: str
    created_at: float
    image_count: int = 0


@dataclass(frozen=True, kw_only=True)
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


@dataclass(frozen=True, kw_only=True)
class Job:
    id: str
    project_id: str
    status: JobStatus
    params: TrainParams
    labels: list[str]
    image_count: int
    created_at: float
    kind: JobKind = JobKind.TRAIN
    metrics: dict[str, Any] | None = None
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    kept_mode: str | None = None
    worker: str | None = None
    attempts: int = 0

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES


@dataclass(frozen=True, kw_only=True)
class StoredEvent:
    seq: int
    type: str
    data: str


def new_id() -> str:
    return uuid.uuid4().hex


def is_id(value: str) -> bool:
    return _ID.fullmatch(value) is not None
