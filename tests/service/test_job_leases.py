"""Leases on real SQLite and PostgreSQL: one holder per job, lost workers' jobs back in the queue, then failed."""

from __future__ import annotations

import time

from app.engine.events import Log
from app.engine.params import TrainParams
from app.service.event_log import EventLog
from app.service.job_leases import LostOutcome, too_many_lost_workers
from app.service.records import JobStatus
from app.service.runners.reaper import reap
from app.service.store import Store
from app.service.uploads import prepare_image
from tests.concurrently import at_once
from tests.web.api_helpers import BLUE, RED, image_bytes

# Long enough never to expire during a test; short enough to expire after a short sleep.
LONG_S, SHORT_S = 60.0, 0.05


def queued_job(store: Store) -> str:
    project = store.create_project("leases")
    for index, (name, colour) in enumerate({"red": RED, "blue": BLUE}.items()):
        image_class = store.create_class(project.id, name)
        for i in range(5):
            data = image_bytes(colour, seed=index * 100 + i)
            store.add_image(image_class, f"{name}{i}.jpg", prepare_image(data, 10_000_000))
    return store.create_job(project.id, TrainParams()).id


def expire(store: Store, job_id: str, worker: str) -> None:
    """Let the worker's lease run out, as it does when the worker is killed."""
    store.renew_lease(job_id, worker, SHORT_S)
    time.sleep(SHORT_S * 2)


def test_only_one_worker_claims_a_job_and_a_repeated_message_finds_it_taken(store: Store) -> None:
    job_id = queued_job(store)
    assert store.claim_job(job_id, "a", LONG_S)
    assert not store.claim_job(job_id, "b", LONG_S)
    job = store.get_job(job_id)
    assert job is not None
    assert (job.status, job.worker, job.attempts) == (JobStatus.RUNNING, "a", 1)
    assert not store.renew_lease(job_id, "b", LONG_S).held
    assert store.renew_lease(job_id, "a", LONG_S).held


def test_a_live_lease_is_never_reaped(store: Store) -> None:
    job_id = queued_job(store)
    store.claim_job(job_id, "a", LONG_S)
    assert store.reap_expired(max_lost=3) == []
    assert store.get_job(job_id).status is JobStatus.RUNNING  # type: ignore[union-attr]


def test_a_lost_workers_job_goes_back_to_the_queue_and_its_late_result_is_dropped(
    store: Store,
) -> None:
    job_id = queued_job(store)
    log, requeued = EventLog(store, shared=True), []
    store.claim_job(job_id, "a", LONG_S)
    expire(store, job_id, "a")
    assert reap(store, log, max_lost=3, requeue=requeued.append) == 1
    assert requeued == [job_id]
    job = store.get_job(job_id)
    assert job is not None and (job.status, job.worker) == (JobStatus.QUEUED, None)
    [event] = store.events_after(job_id, 0)
    assert "Worker a was lost during attempt 1; the job goes back to the queue." in event.data
    assert store.claim_job(job_id, "b", LONG_S)
    assert not store.renew_lease(job_id, "a", LONG_S).held
    assert not store.finish_job(job_id, JobStatus.SUCCEEDED, worker="a")
    assert store.finish_job(job_id, JobStatus.SUCCEEDED, worker="b")
    job = store.get_job(job_id)
    assert job is not None and (job.status, job.worker, job.attempts) == (
        JobStatus.SUCCEEDED,
        "b",
        2,
    )


def test_after_the_last_allowed_lost_worker_the_job_fails_with_a_sentence(store: Store) -> None:
    job_id = queued_job(store)
    log = EventLog(store, shared=True)
    for worker in ("a", "b", "c"):
        assert store.claim_job(job_id, worker, LONG_S)
        expire(store, job_id, worker)
        reap(store, log, max_lost=3, requeue=lambda _: None)
    job = store.get_job(job_id)
    assert job is not None
    assert (job.status, job.attempts) == (JobStatus.FAILED, 3)
    assert job.error == too_many_lost_workers(3, "c")
    assert store.events_after(job_id, 0)[-1].type == "failed"


def test_a_cancel_asked_anywhere_reaches_the_worker_and_wins_over_a_lost_lease(
    store: Store,
) -> None:
    job_id = queued_job(store)
    store.claim_job(job_id, "a", LONG_S)
    store.request_cancel(job_id)
    assert store.renew_lease(job_id, "a", LONG_S).cancel_requested
    assert not store.hand_back(job_id, "a")  # a cancelled job is not handed back
    expire(store, job_id, "a")
    [lost] = store.reap_expired(max_lost=3)
    assert lost.outcome is LostOutcome.CANCELLED
    assert store.get_job(job_id).status is JobStatus.CANCELLED  # type: ignore[union-attr]


def test_a_stopping_worker_hands_its_job_back(store: Store) -> None:
    job_id = queued_job(store)
    store.claim_job(job_id, "a", LONG_S)
    assert store.hand_back(job_id, "a")
    assert store.claim_job(job_id, "b", LONG_S)
    assert store.get_job(job_id).attempts == 2  # type: ignore[union-attr]


def test_processes_appending_to_one_log_get_increasing_ids(store: Store) -> None:
    job_id = queued_job(store)
    worker_log, web_log = EventLog(store, shared=True), EventLog(store, shared=True)
    seqs = [
        log.append(job_id, Log(message=str(i))).seq
        for i, log in enumerate([worker_log, web_log, worker_log, web_log])
    ]
    assert seqs == [1, 2, 3, 4]
    assert [event.seq for event in store.events_after(job_id, 2)] == [3, 4]


def test_appenders_at_once_get_each_id_once(store: Store) -> None:
    job_id = queued_job(store)

    def append(i: int) -> list[int]:
        return [store.add_next_event(job_id, "log", f'{{"message": "{i}.{j}"}}') for j in range(5)]

    outcomes = at_once([lambda i=i: append(i) for i in range(8)])
    seqs = [seq for appended in outcomes for seq in appended]  # type: ignore[union-attr]
    assert sorted(seqs) == list(range(1, 41))
    assert [event.seq for event in store.events_after(job_id, 0)] == list(range(1, 41))


def test_the_queued_jobs_are_listed_for_their_messages_to_be_sent_again(store: Store) -> None:
    job_id = queued_job(store)
    assert store.queued_job_ids() == [job_id]
    store.claim_job(job_id, "a", LONG_S)
    assert store.queued_job_ids() == []
