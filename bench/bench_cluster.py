"""The queue measured (issue 15, item 8): POST to `started` through Celery, the first event over
SSE, short transfer jobs per minute with one and two workers, and the web process's CPU while
workers train; the embedded worker measured the same way in the same run, side by side.

    .venv/bin/python bench/bench_cluster.py [--latency-jobs 8] [--throughput-jobs 6]

Needs Debian's redis-server (`make services`). Every process runs on this machine and on loopback.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.cluster_helpers import Cluster, redis_available
from tests.web.api_helpers import SLOW_JOB, ServerProcess, make_trainable, wait_for_job

SHORT_JOB = {"mode": "transfer", "epochs": 5}


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def first_events(client: httpx.Client, jid: str, posted: float) -> dict[str, float]:
    """Seconds from the POST to the stream's first event and to its `started` event; reads to the end."""
    seen: dict[str, float] = {}
    with client.stream("GET", f"/api/jobs/{jid}/events", timeout=600) as response:
        for line in response.iter_lines():
            if not line.startswith("event: "):
                continue
            kind = line[7:]
            seen.setdefault("first", time.perf_counter() - posted)
            if kind == "started":
                seen.setdefault("started", time.perf_counter() - posted)
            if kind in {"done", "failed", "cancelled", "interrupted"}:
                break
    return seen


def latencies(client: httpx.Client, jobs: int) -> dict[str, list[float]]:
    """One project, one short job after another, on idle workers (the embeddings cached by the first)."""
    pid, _ = make_trainable(client)
    found: dict[str, list[float]] = {"record": [], "first": [], "started": []}
    for index in range(jobs + 1):
        posted = time.perf_counter()
        jid = client.post(f"/api/projects/{pid}/jobs", json=SHORT_JOB).json()["id"]
        seen = first_events(client, jid, posted)
        job = wait_for_job(client, jid, {"succeeded", "failed"}, timeout=600)
        if index == 0:  # the first job loads the backbone and fills the cache: not measured
            continue
        created = datetime.fromisoformat(job["created_at"])
        started = datetime.fromisoformat(job["started_at"])
        found["record"].append((started - created).total_seconds())
        found["first"].append(seen["first"])
        found["started"].append(seen["started"])
    return found


def throughput(client: httpx.Client, jobs: int, web_pid: int) -> tuple[float, float]:
    """Short jobs of `jobs` projects submitted at once: jobs per minute, and the web process's
    CPU (in cores) while they ran."""
    pids = [make_trainable(client)[0] for _ in range(jobs)]
    cpu_before, started = cpu_seconds(web_pid), time.perf_counter()
    jids = [client.post(f"/api/projects/{p}/jobs", json=SHORT_JOB).json()["id"] for p in pids]
    for jid in jids:
        assert (
            wait_for_job(client, jid, {"succeeded", "failed"}, timeout=900)["status"] == "succeeded"
        )
    wall = time.perf_counter() - started
    return jobs / wall * 60, (cpu_seconds(web_pid) - cpu_before) / wall


def recovery(cluster: Cluster, lease_s: float) -> tuple[float, float]:
    """Kill -9 the worker of a running job: seconds until the job is queued again and until
    another worker's `Restarted on` event reaches a stream of the web server."""
    client = cluster.client
    pid, _ = make_trainable(client)
    jid = client.post(f"/api/projects/{pid}/jobs", json=SLOW_JOB).json()["id"]
    job = wait_for_job(client, jid, {"running"}, timeout=600)
    killed = time.perf_counter()
    cluster.worker_by_name(job["worker"]).kill()
    queued = restarted = 0.0
    with client.stream("GET", f"/api/jobs/{jid}/events", timeout=600) as response:
        for line in response.iter_lines():
            if "was lost during attempt" in line and not queued:
                queued = time.perf_counter() - killed
            if "Restarted on worker" in line:
                restarted = time.perf_counter() - killed
                break
    client.post(f"/api/jobs/{jid}/cancel")
    return queued, restarted


def p50(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f} ms"


def row(label: str, *cells: str) -> None:
    print(f"| {label} | " + " | ".join(cells) + " |")


def measure(
    name: str,
    client: httpx.Client,
    web_pid: int,
    args: argparse.Namespace,
    more: Callable[[], None],
) -> dict[str, Any]:
    print(f"# {name}", file=sys.stderr)
    found: dict[str, Any] = latencies(client, args.latency_jobs)
    found["one"] = throughput(client, args.throughput_jobs, web_pid)
    more()
    found["two"] = throughput(client, args.throughput_jobs, web_pid) if name == "queue" else None
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency-jobs", type=int, default=8)
    parser.add_argument("--throughput-jobs", type=int, default=6)
    parser.add_argument(
        "--recovery-only",
        action="store_true",
        help="Only the kill -9 recovery, with the default lease of 15 s and two workers.",
    )
    args = parser.parse_args()
    if not redis_available():
        print("redis-server is not installed: make services", file=sys.stderr)
        return 1
    if args.recovery_only:
        return recovery_only()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        cache = root / "cache"
        embedded = ServerProcess(root / "embedded", cache, root / "embedded.log")
        try:
            alone = measure("embedded", embedded.client, embedded.process.pid, args, lambda: None)
        finally:
            embedded.close()
        cluster = Cluster(root / "cluster", cache, lease_s=15)
        try:
            cluster.wait_until_ready([cluster.start_worker()])

            def second_worker() -> None:
                cluster.wait_until_ready([cluster.start_worker()])

            queued = measure("queue", cluster.client, cluster.web.process.pid, args, second_worker)
        finally:
            cluster.close()

    print(
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load average {os.getloadavg()[0]:.1f} at the end; "
        f"{args.latency_jobs} latency jobs, {args.throughput_jobs} jobs per throughput run "
        f"({SHORT_JOB['mode']}, {SHORT_JOB['epochs']} epochs, 10 images of 64x48, embeddings cached)\n"
    )
    row(
        "measurement",
        "embedded worker (no BROKER_URL)",
        "Celery + Redis, workers in other processes",
    )
    print("|---|---|---|")
    row("POST → `started_at` in the job record, p50", p50(alone["record"]), p50(queued["record"]))
    row("POST → first SSE event at the client, p50", p50(alone["first"]), p50(queued["first"]))
    row("POST → `started` event at the client, p50", p50(alone["started"]), p50(queued["started"]))
    row("short jobs per minute, one worker", f"{alone['one'][0]:.1f}", f"{queued['one'][0]:.1f}")
    row("short jobs per minute, two workers", "—", f"{queued['two'][0]:.1f}")
    row("  ratio two workers / one", "—", f"{queued['two'][0] / queued['one'][0]:.2f}×")
    row(
        "web process CPU while jobs run (cores)",
        f"{alone['one'][1]:.2f} (it trains)",
        f"{queued['one'][1]:.3f} (one worker), {queued['two'][1]:.3f} (two)",
    )
    return 0


def recovery_only() -> int:
    lease_s = 15.0
    with tempfile.TemporaryDirectory() as folder:
        cluster = Cluster(Path(folder), Path(folder) / "cache", lease_s=lease_s)
        try:
            cluster.wait_until_ready([cluster.start_worker(), cluster.start_worker()])
            queued, restarted = recovery(cluster, lease_s)
        finally:
            cluster.close()
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, JOB_LEASE_S={lease_s:g}, load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"kill -9 -> job back in the queue: {queued:.1f} s; -> `Restarted on` event at the client: {restarted:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
