"""Service benchmark on a real server: upload ingest, background embedding, first event, train-to-done, predict.

    .venv/bin/python bench/bench_service.py [--data ../shared/datasets/flowers-dev/train] [--runs 3]

One run on loopback, in this order: upload 300 photos (20 per request), wait for the background
embeddings to settle, train transfer mode `--runs` times (the last with `/api/health` polled at
about 100 requests/s from a thread), then time 50 predictions of one photo through the API.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.web.api_helpers import ServerProcess  # noqa: E402 - the repository root is added just above

DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "flowers-dev" / "train"


def upload(client: httpx.Client, data: Path) -> tuple[str, int, float]:
    pid = client.post("/api/projects", json={"name": "bench"}).json()["id"]
    started, added = time.perf_counter(), 0
    for folder in sorted(d for d in data.iterdir() if d.is_dir()):
        cid = client.post(f"/api/projects/{pid}/classes", json={"name": folder.name}).json()["id"]
        paths = sorted(folder.glob("*.jpg"))
        for i in range(0, len(paths), 20):
            files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in paths[i : i + 20]]
            added += len(
                client.post(f"/api/projects/{pid}/classes/{cid}/images", files=files).json()[
                    "added"
                ]
            )
    return pid, added, time.perf_counter() - started


def train_once(client: httpx.Client, pid: str) -> tuple[float, float, dict]:
    """Seconds to the first event and to the terminal one, and the finished job."""
    started = time.perf_counter()
    jid = client.post(f"/api/projects/{pid}/jobs", json={"mode": "transfer"}).json()["id"]
    first = None
    with client.stream("GET", f"/api/jobs/{jid}/events") as stream:
        for line in stream.iter_lines():
            if line.startswith("event:") and first is None:
                first = time.perf_counter() - started
            if line in ("event: done", "event: failed", "event: cancelled", "event: interrupted"):
                break
    return first or 0.0, time.perf_counter() - started, client.get(f"/api/jobs/{jid}").json()


def poll_health(url: str, stop: threading.Event, latencies: list[float]) -> None:
    with httpx.Client(base_url=url) as client:
        while not stop.is_set():
            tick = time.perf_counter()
            client.get("/api/health")
            latencies.append(time.perf_counter() - tick)
            time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="teachbox-service-"))
    server = ServerProcess(work / "data", work / "cache", work / "server.log")
    client = server.client
    try:
        pid, added, ingest = upload(client, args.data)
        print(
            f"| upload ingest | {added} images in {ingest:.2f} s = {added / ingest:.0f} images/s |"
        )
        settle = time.perf_counter()
        while client.get(f"/api/projects/{pid}").json()["pending_embeddings"]:
            time.sleep(0.05)
        print(
            f"| background embeddings settled after the last upload | {time.perf_counter() - settle:.2f} s |"
        )
        latencies: list[float] = []
        stop = threading.Event()
        for run in range(args.runs):
            poller = (
                threading.Thread(target=poll_health, args=(server.url, stop, latencies))
                if run == args.runs - 1
                else None
            )
            if poller:
                poller.start()
            first, done, job = train_once(client, pid)
            note = ", /api/health polled meanwhile" if poller else ""
            print(
                f"| transfer job {run + 1}{note} | first event {first * 1000:.0f} ms, train-to-done {done:.2f} s, "
                f"status {job['status']}, val acc {job['metrics']['val_accuracy']:.3f} |"
            )
        stop.set()
        if poller:
            poller.join()
        latencies.sort()
        print(
            f"| /api/health while training | n={len(latencies)}, p50 {statistics.median(latencies) * 1000:.1f} ms, "
            f"p99 {latencies[int(len(latencies) * 0.99) - 1] * 1000:.1f} ms |"
        )
        photo = next(args.data.glob("*/*.jpg"))
        files = {"file": (photo.name, photo.read_bytes(), "image/jpeg")}
        client.post(f"/api/projects/{pid}/predict", files=files)
        timings = []
        for _ in range(50):
            tick = time.perf_counter()
            client.post(f"/api/projects/{pid}/predict", files=files).raise_for_status()
            timings.append(time.perf_counter() - tick)
        print(
            f"| predict through the API, one {photo.stat().st_size // 1024} KB photo | p50 {statistics.median(timings) * 1000:.1f} ms |"
        )
    finally:
        server.close()


if __name__ == "__main__":
    main()
