"""The web process's side of the queue: jobs and embedding chunks sent to Celery workers, events
of other processes woken by Redis pub/sub, cancel as a flag any web process can set.

With TEACHBOX_BROKER_URL set, this replaces the embedded worker behind the same `JobRunner`
protocol; the routes do not change. `teachbox worker` (queue_worker.py) runs the jobs.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from app.config import Settings
from app.engine.embeddings import Embedder, EmbeddingCache
from app.engine.events import Cancelled
from app.service.event_log import EventLog
from app.service.records import Job, StoredImage
from app.service.run_context import Embedders, project_backbone
from app.service.runners.in_process import EMBED_CHUNK
from app.service.runners.job_queue import JobQueue
from app.service.runners.reaper import Reaper
from app.service.store import Store


class CeleryRunner:
    """Sends work to `teachbox worker` processes; never trains in the web process."""

    def __init__(self, store: Store, log: EventLog, settings: Settings, queue: JobQueue) -> None:
        self._store, self._log, self._settings, self._queue = store, log, settings, queue
        self._embedders = Embedders(settings)
        self._stop = threading.Event()
        self._listener = threading.Thread(
            target=queue.listen, args=(log.wake, self._stop), name="teachbox-events", daemon=True
        )
        self._reaper = Reaper(store, log, settings.job_max_lost_workers, queue.send_job)

    # The JobRunner protocol

    def start(self) -> None:
        """Follow the workers' events and reap lost workers' jobs. Queued jobs stay queued, and
        their messages are sent again, in case the broker lost them (restarted without its data):
        a worker that finds a job already taken drops the extra message."""
        self._listener.start()
        self._reaper.start()
        for job_id in self._store.queued_job_ids():
            self._queue.send_job(job_id)

    def stop(self, timeout_s: float) -> None:
        """The workers keep running their jobs: only this process's threads stop."""
        self._stop.set()
        self._reaper.stop()
        if self._listener.is_alive():
            self._listener.join(timeout_s)
        self._queue.close()

    def submit(self, job: Job) -> None:
        self._queue.send_job(job.id)

    def cancel(self, job: Job) -> None:
        """Cancel a queued job at once; a running one stops when its worker next renews its lease."""
        self._store.request_cancel(job.id)
        if self._store.cancel_queued(job.id):
            self._log.append(job.id, Cancelled())

    def embed_soon(self, project_id: str, images: Sequence[StoredImage]) -> None:
        if not self._settings.embed_on_upload or not images:
            return
        backbone = project_backbone(self._store, project_id)
        cache = self.embedder(backbone).cache
        cached = cache.get_many([EmbeddingCache.key(backbone, image.sha256) for image in images])
        paths = [
            str(self._store.image_path(image))
            for image in images
            if EmbeddingCache.key(backbone, image.sha256) not in cached
        ]
        for start in range(0, len(paths), EMBED_CHUNK):
            self._queue.send_embedding(project_id, backbone, paths[start : start + EMBED_CHUNK])

    def pending_embeddings(self, project_id: str) -> int:
        return self._queue.pending(project_id)

    def embedder(self, backbone: str) -> Embedder:
        """For analyses outside a job (data health): built here, on the shared embeddings cache."""
        return self._embedders(backbone)
