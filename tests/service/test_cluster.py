"""The queue on real engines: Debian's redis-server, two web servers and two `teachbox worker`
processes on loopback, jobs from several projects at once, events streamed from the web server,
cancel, `kill -9` of a worker mid-job and SIGTERM of another."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.engine.embeddings import EmbeddingCache
from app.engine.params import TrainParams
from app.service.runners.job_queue import JobQueue
from app.service.store import Store
from tests.cluster_helpers import Cluster, redis_available
from tests.web.api_helpers import ROOT, SLOW_JOB, make_trainable, read_events, wait_for_job

pytestmark = [
    pytest.mark.slow,
    pytest.mark.cluster,
    pytest.mark.skipif(
        not redis_available(),
        reason="redis-server is not installed: `make test` installs it (apt-get install redis-server)",
    ),
]

# A short lease, so that a killed worker's job comes back within seconds.
LEASE_S = 5
# A fine-tuning short enough to finish after a restart, long enough to kill its worker mid-job.
SHORT_FINETUNE = {"mode": "finetune", "epochs": 2, "batch_size": 4}
JOB_TIMEOUT_S = 400
# A job queued this long without a message in the broker is sent again.
RESEND_AFTER_S = 2


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """Two web servers and two workers, their metadata in the data dir's SQLite file or in a real
    PostgreSQL (the case of web servers and workers on several machines)."""
    database_url = None
    if request.param == "postgresql":
        database_url = request.getfixturevalue("postgres_server").new_database()
    folder = tmp_path_factory.mktemp("cluster")
    cache = tmp_path_factory.mktemp("cluster-cache")
    running = Cluster(
        folder,
        cache,
        lease_s=LEASE_S,
        web_servers=2,
        database_url=database_url,
        resend_after_s=RESEND_AFTER_S,
    )
    try:
        running.wait_until_ready([running.start_worker(), running.start_worker()])
        yield running
    finally:
        running.close()


@pytest.fixture
def two_workers(cluster: Cluster) -> Cluster:
    """Two live workers, starting new ones for those an earlier test stopped."""
    fresh = [cluster.start_worker() for _ in range(2 - len(cluster.live_workers()))]
    cluster.wait_until_ready(fresh)
    return cluster


def submit(client: httpx.Client, pid: str, params: dict[str, Any]) -> str:
    response = client.post(f"/api/projects/{pid}/jobs", json=params)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def events_until(
    client: httpx.Client, jid: str, event_type: str, after: int = 0, saying: str = ""
) -> list[dict[str, Any]]:
    """Follow the job's stream from the web server, after event `after`, until an event of
    `event_type` whose data holds `saying`; then leave. Each event as {"id", "event", "data"}."""
    events: list[dict[str, Any]] = []
    headers = {"Last-Event-ID": str(after)}
    with client.stream(
        "GET", f"/api/jobs/{jid}/events", headers=headers, timeout=JOB_TIMEOUT_S
    ) as response:
        for line in response.iter_lines():
            if line.startswith("id: "):
                events.append({"id": int(line[4:])})
            elif line.startswith("event: "):
                events[-1]["event"] = line[7:]
            elif line.startswith("data: "):
                events[-1]["data"] = line[6:]
                if events[-1]["event"] == event_type and saying in events[-1]["data"]:
                    break
    return events


def messages(events: list[dict[str, Any]]) -> list[str]:
    return [json.loads(e["data"])["message"] for e in events if e.get("event") == "log"]


def test_two_workers_run_jobs_of_several_projects_at_once_streamed_and_cancelled(
    two_workers: Cluster,
) -> None:
    client, other = (web.client for web in two_workers.webs)
    pids = [make_trainable(client)[0] for _ in range(3)]
    slow = [submit(client, pid, SLOW_JOB) for pid in pids[:2]]
    quick = submit(client, pids[2], {"mode": "transfer", "epochs": 3})
    for jid, follower in zip(slow, (client, other), strict=True):  # either web server streams
        assert events_until(follower, jid, "epoch")[-1]["event"] == "epoch"
    running = [client.get(f"/api/jobs/{jid}").json() for jid in slow]
    assert [job["status"] for job in running] == ["running", "running"]
    assert running[0]["worker"] != running[1]["worker"]
    assert client.get(f"/api/jobs/{quick}").json()["status"] == "queued"  # both workers are busy

    # Each cancelled through the web server that does not stream it.
    for jid, canceller in zip(slow, (other, client), strict=True):
        assert canceller.post(f"/api/jobs/{jid}/cancel").status_code == 202
    for jid, follower in zip(slow, (client, other), strict=True):
        assert read_events(follower, jid, timeout=JOB_TIMEOUT_S)[-1]["event"] == "cancelled"
        assert follower.get(f"/api/jobs/{jid}").json()["status"] == "cancelled"

    done = wait_for_job(client, quick, {"succeeded", "failed"}, timeout=JOB_TIMEOUT_S)
    assert (done["status"], done["attempts"]) == ("succeeded", 1), done
    assert done["worker"] in {job["worker"] for job in running}
    assert done["started_at"] <= done["finished_at"]
    replayed = read_events(client, quick, last_event_id=2)
    assert replayed[0]["id"] == 3 and replayed[-1]["event"] == "done"
    assert f"Running on worker {done['worker']}." in messages(read_events(client, quick))
    model = client.get(f"/api/jobs/{quick}/model")
    assert model.status_code == 200 and model.content[:2] == b"PK"


def test_uploaded_images_are_embedded_by_the_workers_and_counted_across_processes(
    two_workers: Cluster,
) -> None:
    client = two_workers.client
    pid, _ = make_trainable(client, per_class=6)
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while client.get(f"/api/projects/{pid}").json()["pending_embeddings"] and (
        time.monotonic() < deadline
    ):
        time.sleep(0.2)
    assert client.get(f"/api/projects/{pid}").json()["pending_embeddings"] == 0
    images = Store(
        two_workers.folder / "data", two_workers.settings.get("database_url")
    ).list_images(pid)
    cache = EmbeddingCache(two_workers.cache_dir / "embeddings.sqlite")
    keys = [EmbeddingCache.key(TrainParams().backbone, image.sha256) for image in images]
    assert len(images) == 12 and set(cache.get_many(keys)) == set(keys)


def test_a_worker_killed_mid_job_loses_it_to_another_that_finishes_it(two_workers: Cluster) -> None:
    client = two_workers.client
    pid, _ = make_trainable(client)
    jid = submit(client, pid, SHORT_FINETUNE)
    events_until(client, jid, "epoch")
    first = client.get(f"/api/jobs/{jid}").json()
    two_workers.worker_by_name(first["worker"]).kill()

    done = wait_for_job(client, jid, {"succeeded", "failed"}, timeout=JOB_TIMEOUT_S)
    assert (done["status"], done["attempts"]) == ("succeeded", 2), done
    assert done["worker"] != first["worker"]
    said = messages(read_events(client, jid))
    assert (
        f"Worker {first['worker']} was lost during attempt 1; the job goes back to the queue."
        in said
    )
    assert f"Restarted on worker {done['worker']} (attempt 2)." in said
    assert said.index(f"Restarted on worker {done['worker']} (attempt 2).") > said.index(
        f"Running on worker {first['worker']}."
    )


def test_a_job_whose_message_never_reached_the_broker_is_sent_again_and_runs_once(
    two_workers: Cluster,
) -> None:
    """Its web server died between writing the job and sending its message: a reaper sends it
    after RESEND_AFTER_S (each of the four may), and a copy sent while it runs is dropped."""
    client = two_workers.client
    pid, _ = make_trainable(client)
    data_dir = two_workers.folder / "data"
    store = Store(data_dir, two_workers.settings.get("database_url"))
    try:
        jid = store.create_job(pid, TrainParams.model_validate(SHORT_FINETUNE)).id
    finally:
        store.close()
    events_until(client, jid, "epoch")

    queue = JobQueue(Settings(data_dir=data_dir, broker_url=two_workers.redis.url))
    try:
        queue.send_job(jid)  # a late copy while it runs: the idle worker takes it
        done = wait_for_job(client, jid, {"succeeded", "failed"}, timeout=JOB_TIMEOUT_S)
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while not queue.without_message([jid]) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert queue.without_message([jid]) == [jid]  # every copy was taken and acknowledged
    finally:
        queue.close()
    assert (done["status"], done["attempts"]) == ("succeeded", 1), done
    starts = [
        m for m in messages(read_events(client, jid)) if m.startswith(("Running", "Restarted"))
    ]
    assert starts == [f"Running on worker {done['worker']}."]


def test_sigterm_hands_the_running_job_back_to_another_worker(two_workers: Cluster) -> None:
    client = two_workers.client
    pid, _ = make_trainable(client)
    jid = submit(client, pid, SLOW_JOB)
    seen = events_until(client, jid, "epoch")
    first = client.get(f"/api/jobs/{jid}").json()
    assert two_workers.worker_by_name(first["worker"]).terminate() == 0
    # It stopped the job rather than finishing its 20 epochs, and put it back in the queue.
    assert client.get(f"/api/jobs/{jid}").json()["status"] in {"queued", "running"}

    restarted = events_until(client, jid, "log", after=seen[-1]["id"], saying="Restarted on")
    again = client.get(f"/api/jobs/{jid}").json()
    assert (again["status"], again["attempts"]) == ("running", 2)
    assert again["worker"] != first["worker"]
    assert (
        f"Worker {first['worker']} was told to stop; the job goes back to the queue."
        in messages(restarted)
    )
    client.post(f"/api/jobs/{jid}/cancel")
    assert read_events(client, jid, timeout=JOB_TIMEOUT_S)[-1]["event"] == "cancelled"


def run_worker_command(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "worker", "--data-dir", str(tmp_path), *flags],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_worker_without_a_broker_url_says_what_to_set(tmp_path: Path) -> None:
    run = run_worker_command(tmp_path)
    assert run.returncode == 2
    assert (
        "teachbox worker needs a queue: set TEACHBOX_BROKER_URL=redis://host:6379/0" in run.stderr
    )


def test_a_worker_on_an_unknown_device_says_which_names_work(tmp_path: Path) -> None:
    run = run_worker_command(tmp_path, "--device", "gpu0", "--broker-url", "redis://127.0.0.1:1/0")
    assert run.returncode == 2
    assert "error: --device 'gpu0' is not valid" in run.stderr
    assert "cuda:N names one GPU" in run.stderr
