"""Queued jobs whose message never reached the broker, sent again by the reaper: on a real
redis-server and the real Celery transport, over SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from app.config import Settings
from app.service.runners.job_queue import JOBS_QUEUE, UNACKED_KEY, JobQueue
from app.service.runners.reaper import resend_lost_messages
from app.service.store import Store
from tests.cluster_helpers import RedisProcess, redis_available
from tests.service.test_job_leases import LONG_S, queued_job

pytestmark = pytest.mark.skipif(
    not redis_available(),
    reason="redis-server is not installed: `make test` installs it (apt-get install redis-server)",
)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path_factory.mktemp("redis"))
    yield server
    server.close()


@pytest.fixture
def queue(redis_server: RedisProcess, tmp_path: Path) -> Iterator[JobQueue]:
    """A queue on an emptied Redis, as the web servers and workers use it."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    client.close()
    job_queue = JobQueue(Settings(data_dir=tmp_path, broker_url=redis_server.url))
    yield job_queue
    job_queue.close()


def messages_naming(redis_server: RedisProcess, job_id: str) -> int:
    """How many messages in the jobs queue carry the job's id as their only argument."""
    client = redis.Redis.from_url(redis_server.url)
    try:
        return sum(job_id.encode() in raw for raw in client.lrange(JOBS_QUEUE, 0, -1))
    finally:
        client.close()


def test_a_queued_job_without_a_message_is_sent_once(
    store: Store, queue: JobQueue, redis_server: RedisProcess
) -> None:
    job_id = queued_job(store)  # the row is written; its web process died before sending it
    assert resend_lost_messages(store, queue, after_s=LONG_S) == []  # too recent to tell
    assert messages_naming(redis_server, job_id) == 0

    assert resend_lost_messages(store, queue, after_s=0) == [job_id]
    assert messages_naming(redis_server, job_id) == 1
    # Its message now waits in the queue: the next rounds send nothing more.
    assert resend_lost_messages(store, queue, after_s=0) == []
    assert resend_lost_messages(store, queue, after_s=0) == []
    assert messages_naming(redis_server, job_id) == 1


def test_a_message_a_worker_holds_unacknowledged_counts_as_sent(
    store: Store, queue: JobQueue, redis_server: RedisProcess
) -> None:
    job_id = queued_job(store)
    queue.send_job(job_id)
    # What kombu does when a worker takes the message: off the list, into the unacked hash.
    client = redis.Redis.from_url(redis_server.url)
    raw = client.rpop(JOBS_QUEUE)
    assert isinstance(raw, bytes)
    client.hset(UNACKED_KEY, "a-delivery-tag", json.dumps([json.loads(raw), "", JOBS_QUEUE]))
    client.close()
    assert resend_lost_messages(store, queue, after_s=0) == []
    assert messages_naming(redis_server, job_id) == 0


def test_a_claimed_job_is_not_sent_again(store: Store, queue: JobQueue) -> None:
    job_id = queued_job(store)
    assert store.claim_job(job_id, "a", LONG_S)
    assert resend_lost_messages(store, queue, after_s=0) == []
