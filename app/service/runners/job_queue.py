"""The queue on an existing engine: Celery with a Redis broker, plus Redis pub/sub for live events.

Messages carry only a job id (or an embedding chunk); everything else is in the shared store. One
job at a time per worker process: late acknowledgement, prefetch 1, the solo pool (so that a
`kill -9` of the worker takes its job down with it, instead of leaving an orphaned child).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence

import redis
from celery import Celery

from app.config import Settings

logger = logging.getLogger("teachbox.queue")

RUN_JOB, EMBED = "teachbox.run_job", "teachbox.embed"
JOBS_QUEUE, EMBED_QUEUE = "teachbox.jobs", "teachbox.embed"
EVENTS_CHANNEL = "teachbox:events"
# Where kombu's Redis transport keeps the messages workers took and have not acknowledged yet.
UNACKED_KEY = "unacked"
# Kept this long after the last change, so that a count a lost worker left behind fades away.
PENDING_TTL_S = 3600


def make_celery(broker_url: str) -> Celery:
    app = Celery("teachbox", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=1,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_default_queue=JOBS_QUEUE,
        # "priority": a worker always asks the jobs queue first, embedding chunks only when empty.
        # A message a dead worker held comes back after the visibility timeout; the job's lease
        # (job_leases.py) brings the job back much sooner, and makes the late copy a no-op.
        broker_transport_options={"queue_order_strategy": "priority", "visibility_timeout": 3600},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
    )
    return app


class JobQueue:
    """What the web process and the workers say to each other through Redis."""

    def __init__(self, settings: Settings) -> None:
        if not settings.broker_url:
            raise ValueError("JobQueue needs TEACHBOX_BROKER_URL")
        self.celery = make_celery(settings.broker_url)
        self._redis = redis.Redis.from_url(settings.broker_url)

    def send_job(self, job_id: str) -> None:
        # The task id starts with the job's, so that `without_message` can tell the job's messages.
        task_id = f"{job_id}-{uuid.uuid4().hex}"
        self.celery.send_task(RUN_JOB, args=[job_id], queue=JOBS_QUEUE, task_id=task_id)

    def without_message(self, job_ids: Sequence[str]) -> list[str]:
        """Those of `job_ids` that no message in the broker names: none waits in the jobs queue and
        no worker holds one unacknowledged (the Redis transport keeps those in a hash)."""
        reading = self._redis.pipeline()
        reading.lrange(JOBS_QUEUE, 0, -1)
        reading.hvals(UNACKED_KEY)
        waiting, held = reading.execute()
        messages = b"\n".join([*waiting, *held])
        return [job_id for job_id in job_ids if job_id.encode() not in messages]

    def send_embedding(self, project_id: str, backbone: str, paths: Sequence[str]) -> None:
        self._redis.incrby(_pending_key(project_id), len(paths))
        self._redis.expire(_pending_key(project_id), PENDING_TTL_S)
        self.celery.send_task(EMBED, args=[project_id, backbone, list(paths)], queue=EMBED_QUEUE)

    def embedded(self, project_id: str, count: int) -> None:
        """A worker computed (or gave up on) `count` of the project's pending embeddings."""
        if self._redis.decrby(_pending_key(project_id), count) <= 0:
            self._redis.delete(_pending_key(project_id))

    def jobs_waiting(self) -> bool:
        """Whether a job message waits in the jobs queue (the Redis transport keeps it as a list)."""
        try:
            return bool(self._redis.llen(JOBS_QUEUE))
        except redis.RedisError:
            return False

    def pending(self, project_id: str) -> int:
        value = self._redis.get(_pending_key(project_id))
        return max(0, int(value)) if value is not None else 0

    def publish_event(self, job_id: str) -> None:
        """Wake the streams of every web process following the job; they read the event from the store."""
        try:
            self._redis.publish(EVENTS_CHANNEL, job_id)
        except redis.RedisError as exc:  # the streams still poll the store every second
            logger.warning("Could not announce an event of job %s: %r", job_id, exc)

    def listen(self, on_job: Callable[[str], None], stop: threading.Event) -> None:
        """Call `on_job(job_id)` for each announced event until `stop` is set; reconnects on errors."""
        while not stop.is_set():
            try:
                with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    pubsub.subscribe(EVENTS_CHANNEL)
                    while not stop.is_set():
                        message = pubsub.get_message(timeout=0.5)
                        if message is not None and message["type"] == "message":
                            on_job(message["data"].decode())
            except redis.RedisError as exc:
                logger.warning("Lost the event channel, reconnecting: %r", exc)
                stop.wait(1.0)

    def close(self) -> None:
        self._redis.close()
        self.celery.close()


def _pending_key(project_id: str) -> str:
    return f"teachbox:pending:{project_id}"
