"""The store on each database it supports: the data dir's SQLite file, and a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.service.store import Store
from tests.postgres_helpers import PostgresServer


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Files in a temporary data dir; the metadata in its SQLite file, or in a new empty database
    on the session's PostgreSQL (skipped with the reason when that is not installed)."""
    database_url = None
    if request.param == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres_server")
        database_url = server.new_database()
    store = Store(tmp_path / "data", database_url)
    yield store
    store.close()
