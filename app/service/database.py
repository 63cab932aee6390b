"""The metadata database, SQLite or PostgreSQL: migrated on open, one transaction per `_db` block."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection

from app.service.migrate import engine_for, sqlite_url, transaction, upgrade


class Database:
    """Thread-safe access to the metadata database: pooled connections, one transaction per block.

    `location` is a SQLite file (the data dir's `teachbox.sqlite`) or a database URL
    (`postgresql://…`). Opening it applies the migrations (`teachbox db upgrade`).
    """

    def __init__(self, location: Path | str) -> None:
        self.db_path = location if isinstance(location, Path) else None
        self.url = sqlite_url(location) if isinstance(location, Path) else location
        upgrade(self.url)
        # Connections are kept and reused (opening one per query cost about 0.3 ms, a tenth of a
        # predict); the pool grows with the threads that use it at once and keeps ten.
        self.engine = engine_for(self.url, pool_size=10, max_overflow=-1)
        self.postgres = self.engine.dialect.name == "postgresql"

    @contextmanager
    def _db(self, write: bool = False) -> Iterator[Connection]:
        """One transaction (see `migrate.transaction`); callers never nest these blocks."""
        with transaction(self.engine, write) as connection:
            yield connection

    def close(self) -> None:
        """Close the pooled connections; the next query opens new ones."""
        self.engine.dispose()
