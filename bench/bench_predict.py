"""Predict benchmark on a real server: one image at a time, then many clients at once, batched and not.

    .venv/bin/python bench/bench_predict.py [--data ../shared/datasets/flowers-dev/train] [--clients 8]

One run on loopback: train a transfer model on 2 classes x 10 photos, then time, side by side,
(1) the exported model alone in this process, (2) one request at a time through the API, with the
server's own `Server-Timing` breakdown, (3) `--clients` threads sending requests at once to the
same server (batching on, the default) and to a second server on the same data with
TEACHBOX_PREDICT_MAX_BATCH=1.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.engine.images import decode_image  # noqa: E402
from app.engine.model_zip import OnnxClassifier  # noqa: E402
from tests.web.api_helpers import ServerProcess  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "flowers-dev" / "train"
REQUESTS = 50


def p50_ms(timings: list[float]) -> float:
    return statistics.median(timings) * 1000


def train_small_project(client: httpx.Client, data: Path) -> str:
    pid = client.post("/api/projects", json={"name": "predict bench"}).json()["id"]
    for folder in sorted(d for d in data.iterdir() if d.is_dir())[:2]:
        cid = client.post(f"/api/projects/{pid}/classes", json={"name": folder.name}).json()["id"]
        files = [
            ("files", (p.name, p.read_bytes(), "image/jpeg"))
            for p in sorted(folder.glob("*.jpg"))[:10]
        ]
        client.post(f"/api/projects/{pid}/classes/{cid}/images", files=files).raise_for_status()
    jid = client.post(f"/api/projects/{pid}/jobs", json={"mode": "transfer"}).json()["id"]
    while (status := client.get(f"/api/jobs/{jid}").json()["status"]) not in (
        "succeeded",
        "failed",
    ):
        time.sleep(0.1)
    assert status == "succeeded", status
    return pid


def server_timing(header: str) -> dict[str, float]:
    """{"decode": ms, "queue": ms, "model": ms} from a Server-Timing header."""
    parts = {}
    for entry in header.split(","):
        name, *fields = entry.strip().split(";")
        parts[name] = float(next(f for f in fields if f.startswith("dur="))[4:])
    return parts


def one_at_a_time(
    client: httpx.Client, pid: str, files: dict
) -> tuple[list[float], list[dict[str, float]]]:
    for _ in range(5):
        client.post(f"/api/projects/{pid}/predict", files=files).raise_for_status()
    timings, breakdowns = [], []
    for _ in range(REQUESTS):
        tick = time.perf_counter()
        response = client.post(f"/api/projects/{pid}/predict", files=files)
        timings.append(time.perf_counter() - tick)
        response.raise_for_status()
        breakdowns.append(server_timing(response.headers["server-timing"]))
    return timings, breakdowns


def many_at_once(url: str, pid: str, files: dict, clients: int) -> tuple[float, list[float]]:
    """Requests per second and latencies of `clients` threads sending REQUESTS each."""
    latencies: list[float] = []
    barrier = threading.Barrier(clients + 1)

    def client_loop() -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            barrier.wait()
            for _ in range(REQUESTS):
                tick = time.perf_counter()
                client.post(f"/api/projects/{pid}/predict", files=files).raise_for_status()
                latencies.append(time.perf_counter() - tick)

    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return len(latencies) / (time.perf_counter() - started), latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="teachbox-predict-"))
    batched = ServerProcess(work / "data", work / "cache", work / "batched.log")
    try:
        pid = train_small_project(batched.client, args.data)
        photo = next(args.data.glob("*/*.jpg"))
        files = {"file": (photo.name, photo.read_bytes(), "image/jpeg")}

        model = OnnxClassifier.from_zip(next((work / "data").rglob("*.zip")))
        in_process = []
        for _ in range(REQUESTS):
            tick = time.perf_counter()
            model.predict_images([decode_image(photo.read_bytes())])
            in_process.append(time.perf_counter() - tick)
        print(
            f"| decode + model in this process, one {photo.stat().st_size // 1024} KB photo | p50 {p50_ms(in_process):.1f} ms |"
        )

        timings, breakdowns = one_at_a_time(batched.client, pid, files)
        parts = {name: statistics.median(b[name] for b in breakdowns) for name in breakdowns[0]}
        print(
            f"| predict through the API, one request at a time | p50 {p50_ms(timings):.1f} ms "
            f"(server: decode {parts['decode']:.1f}, queue {parts['queue']:.1f}, model {parts['model']:.1f} ms) |"
        )

        rate, latencies = many_at_once(batched.url, pid, files, args.clients)
        os.environ["TEACHBOX_PREDICT_MAX_BATCH"] = "1"
        batched.close()
        unbatched = ServerProcess(work / "data", work / "cache", work / "unbatched.log")
        try:
            unbatched.client.post(f"/api/projects/{pid}/predict", files=files).raise_for_status()
            rate_alone, latencies_alone = many_at_once(unbatched.url, pid, files, args.clients)
        finally:
            unbatched.close()
        print(
            f"| {args.clients} clients at once, batched (default) | {rate:.0f} requests/s, p50 {p50_ms(latencies):.1f} ms |"
        )
        print(
            f"| {args.clients} clients at once, TEACHBOX_PREDICT_MAX_BATCH=1 | {rate_alone:.0f} requests/s, "
            f"p50 {p50_ms(latencies_alone):.1f} ms |"
        )
        print(f"| batching speed-up under load | {rate / rate_alone:.2f}x requests/s |")
    finally:
        batched.close()


if __name__ == "__main__":
    main()
