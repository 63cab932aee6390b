"""Load on the real server, loopback only, bounded: one run takes about a minute.

    .venv/bin/python bench/bench_load.py [--uploads 50] [--subscribers 200] [--rounds 3] [--json out.json]

Starts `python -m app.web.factory` (uvicorn) on a free 127.0.0.1 port with a temporary data dir, then:

1. `--uploads` concurrent uploads of one ~5 MB JPEG each (real, distinct photo-sized files), with
   `/api/health` polled meanwhile;
2. `--rounds` fine-tuning jobs, one after the other, each with `--subscribers` event streams read
   to its terminal event, while `--late-uploads` more 5 MB uploads arrive and `/api/health` is
   polled every 50 ms;
3. the count of stored images (API, database rows and files on disk) against the uploads accepted,
   and the server's resident memory at start, after the uploads, after each job, and at its peak.

The benchmark client runs on the same machine and competes for its CPU. Everything is deleted
afterwards, and the server is stopped even when a step fails. Exits 1 if anything was lost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import io
import json
import os
import select
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
FILE_BYTES = 5_000_000
JOB = {"mode": "finetune", "epochs": 2, "batch_size": 16}
HEALTH_EVERY_S = 0.05


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    data_dir: Path

    def rss_mb(self) -> float:
        return _status_kb(self.process.pid, "VmRSS") / 1024

    def peak_rss_mb(self) -> float:
        return _status_kb(self.process.pid, "VmHWM") / 1024


@dataclass
class Latencies:
    samples: list[float] = field(default_factory=list)
    errors: int = 0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] * 1000


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(scratch: Path) -> Server:
    port = _free_port()
    env = os.environ | {
        "TEACHBOX_DATA_DIR": str(scratch / "data"),
        "TEACHBOX_CACHE_DIR": str(scratch / "cache"),
        "TEACHBOX_HOST": "127.0.0.1",
        "TEACHBOX_PORT": str(port),
    }
    log = (scratch / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "app.web.factory"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = Server(process, f"http://127.0.0.1:{port}", scratch / "data")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited; see {scratch / 'server.log'}")
        try:
            if httpx.get(server.url + "/api/health", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("the server did not answer /api/health within 60 s")


def stop_server(server: Server) -> None:
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(10)


def photo_jpegs(count: int, target: int = FILE_BYTES) -> list[bytes]:
    """`count` real JPEGs of about 5 MB: 2400x1800 colour fields with fine grain, each different
    (another window of the grain, another phase of the field), at one quality found for the first."""
    height, width, margin = 1800, 2400, 97
    rng = np.random.default_rng(0)
    grain = rng.normal(0, 36, (height + margin, width + margin, 3)).astype(np.float32)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)

    def picture(index: int) -> Image.Image:
        field = np.stack(
            [
                128 + 90 * np.sin(x / (150 + 20 * c) + index) * np.cos(y / (210 - 30 * c))
                for c in range(3)
            ],
            axis=-1,
        )
        dy, dx = (index * 37) % margin, (index * 61) % margin
        pixels = np.clip(field + grain[dy : dy + height, dx : dx + width], 0, 255).astype(np.uint8)
        return Image.fromarray(pixels, "RGB")

    def encode(image: Image.Image, quality: int) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        return buffer.getvalue()

    first = picture(0)
    quality = next((q for q in range(80, 99) if len(encode(first, q)) >= target), 98)
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        return list(pool.map(lambda i: encode(picture(i), quality), range(count)))


async def upload_all(
    client: httpx.AsyncClient, pid: str, class_ids: list[str], files: list[bytes]
) -> tuple[Latencies, int]:
    """All files at once, one request each; returns the latencies and how many were stored."""
    latencies = Latencies()

    async def one(index: int, data: bytes) -> int:
        cid = class_ids[index % len(class_ids)]
        tick = time.perf_counter()
        response = await client.post(
            f"/api/projects/{pid}/classes/{cid}/images",
            files={"files": (f"photo-{index}.jpg", data, "image/jpeg")},
        )
        latencies.samples.append(time.perf_counter() - tick)
        if response.status_code != 200:
            latencies.errors += 1
            return 0
        return len(response.json()["added"])

    added = await asyncio.gather(*(one(i, data) for i, data in enumerate(files)))
    return latencies, sum(added)


async def subscribe(client: httpx.AsyncClient, jid: str) -> dict[str, Any]:
    """Read one event stream to its end: how many events, the last one, when the first came."""
    tick, first, count, last = time.perf_counter(), None, 0, None
    async with client.stream("GET", f"/api/jobs/{jid}/events") as response:
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                count += 1
                last = line[7:]
                first = first if first is not None else time.perf_counter() - tick
    return {"events": count, "last": last, "first_s": first}


# /api/health is timed from a process of its own, so that the benchmark client's own event loop
# (hundreds of streams and uploads) does not add its queueing to the server's answer times.
class HealthProbe:
    """A child process (this script with --probe-health) that asks /api/health until stopped."""

    def __init__(self, server: Server) -> None:
        port = server.url.rsplit(":", 1)[1]
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--probe-health", port],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def stop(self) -> Latencies:
        out, _ = self.process.communicate("stop\n", timeout=60)
        data = json.loads(out)
        return Latencies(data["samples"], data["errors"])


def probe_health(port: int) -> None:
    """Time GET /api/health every HEALTH_EVERY_S over one connection until a line arrives on stdin."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies = Latencies()
    while not select.select([sys.stdin], [], [], 0)[0]:
        tick = time.perf_counter()
        try:
            connection.request("GET", "/api/health")
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                latencies.samples.append(time.perf_counter() - tick)
            else:
                latencies.errors += 1
        except OSError:
            latencies.errors += 1
            connection.close()
        time.sleep(HEALTH_EVERY_S)
    print(json.dumps({"samples": latencies.samples, "errors": latencies.errors}))


class RssSampler(threading.Thread):
    """The server's resident memory every 0.2 s, for its peak during a phase."""

    def __init__(self, server: Server) -> None:
        super().__init__(daemon=True)
        self.server, self.peak, self.done = server, 0.0, threading.Event()

    def run(self) -> None:
        while not self.done.is_set() and self.server.process.poll() is None:
            with contextlib.suppress(KeyError, FileNotFoundError):  # the server is exiting
                self.peak = max(self.peak, self.server.rss_mb())
            time.sleep(0.2)


def stored_counts(server: Server, client: httpx.Client, pid: str) -> dict[str, int]:
    with sqlite3.connect(server.data_dir / "teachbox.sqlite") as db:
        rows = db.execute("SELECT COUNT(*) FROM images WHERE project_id = ?", (pid,)).fetchone()[0]
    folder = server.data_dir / "projects" / pid / "images"
    return {
        "api": len(client.get(f"/api/projects/{pid}/images").json()),
        "rows": rows,
        "files": sum(1 for p in folder.iterdir() if not p.name.startswith(".")),
    }


async def job_round(
    server: Server,
    client: httpx.AsyncClient,
    pid: str,
    class_ids: list[str],
    files: list[bytes],
    subscribers: int,
) -> dict[str, Any]:
    """One training job with `subscribers` streams on it, while `files` are uploaded and
    /api/health is polled."""
    probe = HealthProbe(server)
    tick = time.perf_counter()
    jid = (await client.post(f"/api/projects/{pid}/jobs", json=JOB)).json()["id"]
    streams = [asyncio.create_task(subscribe(client, jid)) for _ in range(subscribers)]
    late, late_added = await upload_all(client, pid, class_ids, files)
    outcomes = await asyncio.gather(*streams)
    seconds = time.perf_counter() - tick
    health = probe.stop()
    job = (await client.get(f"/api/jobs/{jid}")).json()
    firsts = sorted(o["first_s"] for o in outcomes)
    return {
        "job": {"status": job["status"], "seconds": round(seconds, 1), **JOB},
        "subscribers": {
            "count": subscribers,
            "got_terminal": sum(o["last"] in ("done", "failed", "cancelled") for o in outcomes),
            "same_events": len({o["events"] for o in outcomes}) == 1,
            "events_each": max(o["events"] for o in outcomes),
            "first_event_p50_ms": round(firsts[len(firsts) // 2] * 1000),
            "first_event_p99_ms": round(firsts[int(0.99 * (len(firsts) - 1))] * 1000),
        },
        "uploads": {
            "count": len(files),
            "stored": late_added,
            "errors": late.errors,
            "p99_ms": round(late.percentile(99)) if late.samples else None,
        },
        "health": {
            "requests": len(health.samples),
            "errors": health.errors,
            "p50_ms": round(health.percentile(50), 1),
            "p99_ms": round(health.percentile(99), 1),
            "max_ms": round(max(health.samples) * 1000, 1),
        },
        "rss_mb_after": round(server.rss_mb()),
    }


async def run(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"rss_mb": {"started": round(server.rss_mb())}}
    files = photo_jpegs(args.uploads + args.rounds * args.late_uploads)
    results["file_mb"] = round(statistics.mean(len(f) for f in files) / 1e6, 2)
    # Idle connections are dropped before uvicorn closes them (after 5 s), so none is reused as it closes.
    limits = httpx.Limits(max_connections=args.subscribers + args.uploads + 20, keepalive_expiry=2)
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=300) as client:
        pid = (await client.post("/api/projects", json={"name": "load"})).json()["id"]
        class_ids = [
            (await client.post(f"/api/projects/{pid}/classes", json={"name": name})).json()["id"]
            for name in ("left", "right")
        ]
        sampler = RssSampler(server)
        sampler.start()
        probe = HealthProbe(server)
        tick = time.perf_counter()
        latency, added = await upload_all(client, pid, class_ids, files[: args.uploads])
        seconds = time.perf_counter() - tick
        health = probe.stop()
        results["uploads"] = {
            "count": args.uploads,
            "stored": added,
            "errors": latency.errors,
            "seconds": round(seconds, 2),
            "mb_per_s": round(args.uploads * results["file_mb"] / seconds, 1),
            "p50_ms": round(latency.percentile(50)),
            "p99_ms": round(latency.percentile(99)),
            "health_p99_ms": round(health.percentile(99), 1),
        }
        results["rss_mb"]["after_uploads"] = round(server.rss_mb())
        results["rounds"] = []
        for index in range(args.rounds):
            start = args.uploads + index * args.late_uploads
            batch = files[start : start + args.late_uploads]
            results["rounds"].append(
                await job_round(server, client, pid, class_ids, batch, args.subscribers)
            )
            added += results["rounds"][-1]["uploads"]["stored"]
        sampler.done.set()
    results["rss_mb"]["peak_sampled"] = round(sampler.peak)
    results["rss_mb"]["high_water"] = round(server.peak_rss_mb())
    with httpx.Client(base_url=server.url, timeout=30) as client:
        results["stored"] = {"accepted": added, **stored_counts(server, client, pid)}
    return results


def table(results: dict[str, Any]) -> str:
    up, rss, stored = results["uploads"], results["rss_mb"], results["stored"]
    rows = [
        ("Concurrent uploads", f"{up['count']} x {results['file_mb']} MB JPEG, one request each"),
        ("  stored / errors", f"{up['stored']} / {up['errors']}"),
        ("  wall time, throughput", f"{up['seconds']} s, {up['mb_per_s']} MB/s"),
        ("  latency p50 / p99", f"{up['p50_ms']} / {up['p99_ms']} ms"),
        ("  /api/health p99 meanwhile", f"{up['health_p99_ms']} ms"),
    ]
    for number, round_ in enumerate(results["rounds"], start=1):
        job, subs, late, health = (round_[k] for k in ("job", "subscribers", "uploads", "health"))
        rows += [
            (f"Job {number}", f"{job['mode']}, {job['epochs']} epochs, batch {job['batch_size']}: {job['status']} in {job['seconds']} s"),
            ("  event-stream subscribers", f"{subs['got_terminal']} of {subs['count']} got the terminal event; same events for all: {subs['same_events']} ({subs['events_each']} each)"),
            ("  first event p50 / p99", f"{subs['first_event_p50_ms']} / {subs['first_event_p99_ms']} ms after subscribing"),
            ("  uploads meanwhile", f"{late['count']} x 5 MB: {late['stored']} stored, {late['errors']} errors, p99 {late['p99_ms']} ms"),
            ("  /api/health meanwhile", f"{health['requests']} requests, {health['errors']} errors; p50 {health['p50_ms']}, p99 {health['p99_ms']}, max {health['max_ms']} ms"),
            ("  server RSS after", f"{round_['rss_mb_after']} MB"),
        ]  # fmt: skip
    rows += [
        ("Server RSS", f"started {rss['started']} MB, after uploads {rss['after_uploads']} MB, peak {rss['peak_sampled']} MB (high-water {rss['high_water']} MB)"),
        ("Images stored", f"accepted {stored['accepted']}: API {stored['api']}, rows {stored['rows']}, files {stored['files']}"),
    ]  # fmt: skip
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=50)
    parser.add_argument("--late-uploads", type=int, default=20)
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="Training jobs, one after the other.")
    parser.add_argument("--json", type=Path, help="Also write the results here as JSON.")
    parser.add_argument("--probe-health", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe_health:
        probe_health(args.probe_health)
        return 0
    with tempfile.TemporaryDirectory(prefix="teachbox-load-") as scratch:
        server = start_server(Path(scratch))
        try:
            results = asyncio.run(run(server, args))
        except BaseException:
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.process.wait(5)
            code = server.process.poll()
            log = (Path(scratch) / "server.log").read_text(errors="replace").splitlines()
            print(
                f"The run failed; the server {'exited with ' + str(code) if code is not None else 'was running'}. Its log ends:"
            )
            print("\n".join(line for line in log if '" 20' not in line)[-4000:])
            raise
        finally:
            stop_server(server)
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    stored = results["stored"]
    lost = len({stored["accepted"], stored["api"], stored["rows"], stored["files"]}) != 1
    rounds = results["rounds"]
    complete = all(r["subscribers"]["got_terminal"] == args.subscribers for r in rounds)
    succeeded = all(r["job"]["status"] == "succeeded" for r in rounds)
    return 0 if complete and succeeded and not lost else 1


if __name__ == "__main__":
    sys.exit(main())
