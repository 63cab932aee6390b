"""The metadata database measured (issue 15, item 2): the store's calls a request makes, on the data
dir's SQLite file and on a local PostgreSQL, beside the same query through the bare sqlite3 driver
(the floor SQLAlchemy's Core adds its statement handling to), all in one run.

    .venv/bin/python bench/bench_database.py [--calls 2000]

Needs Debian's PostgreSQL (`make services`); as root it runs it as the `postgres` user.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.engine.params import TrainParams
from app.service.store import Store
from app.service.uploads import prepare_image
from tests.postgres_helpers import PostgresServer, postgres_missing
from tests.web.api_helpers import BLUE, RED, image_bytes


def per_call_us(call: Callable[[], object], calls: int) -> float:
    for _ in range(calls // 10):  # warm: pools filled, statements compiled and cached
        call()
    start = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - start) / calls * 1e6


def filled(store: Store) -> tuple[str, str]:
    project = store.create_project("bench")
    for name, colour in (("red", RED), ("blue", BLUE)):
        image_class = store.create_class(project.id, name)
        for i in range(25):
            data = image_bytes(colour, seed=i)
            store.add_image(image_class, f"{i}.jpg", prepare_image(data, 10_000_000))
    job = store.create_job(project.id, TrainParams())
    return project.id, job.id


def measure(store: Store, calls: int) -> dict[str, float]:
    project_id, job_id = filled(store)
    return {
        "get_project (every request)": per_call_us(lambda: store.get_project(project_id), calls),
        "list_images (50 images)": per_call_us(lambda: store.list_images(project_id), calls // 4),
        "add_next_event (a write)": per_call_us(
            lambda: store.add_next_event(job_id, "log", "{}"), calls // 4
        ),
    }


def bare_sqlite(path: Path, project_id: str, calls: int) -> float:
    """get_project's query as SQL text through the sqlite3 driver, one kept connection."""
    db = sqlite3.connect(path)
    query = (
        "SELECT p.id, p.name, p.created_at, p.owner_id, "
        "(SELECT COUNT(*) FROM classes c WHERE c.project_id = p.id), "
        "(SELECT COUNT(*) FROM images i WHERE i.project_id = p.id) FROM projects p WHERE p.id = ?"
    )
    return per_call_us(lambda: db.execute(query, (project_id,)).fetchone(), calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    reason = postgres_missing()
    if reason:
        sys.exit(f"No PostgreSQL to measure: {reason}.")
    server = PostgresServer()
    try:
        with tempfile.TemporaryDirectory() as folder:
            sqlite_store = Store(Path(folder) / "sqlite")
            on_sqlite = measure(sqlite_store, args.calls)
            project_id = sqlite_store.list_projects()[0].id
            floor = bare_sqlite(
                sqlite_store.database_file(sqlite_store.data_dir), project_id, args.calls
            )
            on_postgres = measure(Store(Path(folder) / "pg", server.new_database()), args.calls)
    finally:
        server.close()
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; µs per call, {args.calls} calls"
    )
    print("| call | SQLite | PostgreSQL | PostgreSQL / SQLite |")
    print("|---|---|---|---|")
    for name, sqlite_us in on_sqlite.items():
        pg_us = on_postgres[name]
        print(f"| {name} | {sqlite_us:.0f} | {pg_us:.0f} | {pg_us / sqlite_us:.2f}× |")
    print(
        f"| get_project's query through the bare sqlite3 driver | {floor:.0f} | | "
        f"store / bare: {on_sqlite['get_project (every request)'] / floor:.1f}× |"
    )


if __name__ == "__main__":
    main()
