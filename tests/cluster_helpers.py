"""A real queue on one machine for tests and benchmarks: Debian's redis-server on a free port, one
web server and `teachbox worker` processes, all on loopback and one temporary data dir."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.web.api_helpers import ROOT, ServerProcess, free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def redis_available() -> bool:
    return Path(REDIS_SERVER).is_file()


class RedisProcess:
    """redis-server without persistence, in `folder`, answering on a free loopback port."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(folder),
            ],
            stdout=(folder / "redis.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        self._wait_until_ready()

    def _wait_until_ready(self, timeout: float = 20) -> None:
        import redis

        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "redis-server exited at start"
            try:
                if client.ping():
                    client.close()
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise AssertionError("redis-server did not answer PING in time")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


class WorkerProcess:
    """`python -m app.cli worker` in a child process, with the cluster's settings."""

    def __init__(self, env: dict[str, str], log_path: Path, device: str = "cpu") -> None:
        self.log_path = log_path
        self.log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker", "--device", device],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def terminate(self, timeout: float = 60) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


class Cluster:
    """Redis, one web server and workers, sharing one data dir and one embeddings cache."""

    def __init__(
        self,
        folder: Path,
        cache_dir: Path,
        lease_s: float = 5,
        web_servers: int = 1,
        database_url: str | None = None,
        resend_after_s: float = 10,
    ) -> None:
        """`database_url`: the metadata in that (PostgreSQL) database, else in the data dir's SQLite.
        `resend_after_s`: how long a job stays queued without a message before a reaper sends it."""
        self.folder, self.cache_dir = folder, cache_dir
        self.redis = RedisProcess(folder / "redis")
        self.settings = {
            "broker_url": self.redis.url,
            "job_lease_s": str(lease_s),
            "job_resend_after_s": str(resend_after_s),
        }
        if database_url is not None:
            self.settings["database_url"] = database_url
        self.env = (
            os.environ
            | {
                "TEACHBOX_DATA_DIR": str(folder / "data"),
                "TEACHBOX_CACHE_DIR": str(cache_dir),
                "TEACHBOX_BROKER_URL": self.redis.url,
                "TEACHBOX_JOB_LEASE_S": str(lease_s),
                "TEACHBOX_JOB_RESEND_AFTER_S": str(resend_after_s),
                "PYTHONPATH": str(ROOT),
            }
            | ({"TEACHBOX_DATABASE_URL": database_url} if database_url else {})
        )
        self.webs = [
            ServerProcess(folder / "data", cache_dir, folder / f"web-{i}.log", **self.settings)
            for i in range(web_servers)
        ]
        self.web = self.webs[0]
        self.workers: list[WorkerProcess] = []

    @property
    def client(self) -> httpx.Client:
        return self.web.client

    def start_worker(self) -> WorkerProcess:
        index = len(self.workers)
        worker = WorkerProcess(self.env, self.folder / f"worker-{index}.log")
        self.workers.append(worker)
        return worker

    def wait_until_ready(self, workers: list[WorkerProcess], timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for worker in workers:
                assert worker.process.poll() is None, worker.log_path.read_text()[-3000:]
            if all(" ready." in w.log_path.read_text(errors="replace") for w in workers):
                return
            time.sleep(0.2)
        raise AssertionError("the workers did not get ready in time")

    def worker_by_name(self, name: str) -> WorkerProcess:
        """The worker a job record names (host:pid:device)."""
        pid = int(name.split(":")[1])
        return next(worker for worker in self.workers if worker.pid == pid)

    def live_workers(self) -> list[WorkerProcess]:
        return [worker for worker in self.workers if worker.process.poll() is None]

    def close(self) -> None:
        for worker in self.workers:
            worker.close()
        for web in self.webs:
            web.close()
        self.redis.close()
