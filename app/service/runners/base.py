"""What the routes need from whatever runs jobs: swap in a distributed queue without touching them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from app.engine.embeddings import Embedder
from app.service.records import Job, StoredImage


class JobRunner(Protocol):
    """What the routes need from whatever runs jobs; swap in a distributed queue without touching them."""

    def start(self) -> None: ...

    def stop(self, timeout_s: float) -> None: ...

    def submit(self, job: Job) -> None: ...

    def cancel(self, job: Job) -> None: ...

    def embed_soon(self, project_id: str, images: Sequence[StoredImage]) -> None: ...

    def pending_embeddings(self, project_id: str) -> int: ...

    def embedder(self, backbone: str) -> Embedder: ...
