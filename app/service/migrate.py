"""The metadata database's migrations (Alembic, app/service/migrations/) and copying it elsewhere.

`upgrade(url)` brings any database to the newest revision: an empty one gets every table; a SQLite
file made before Alembic (by schema.py's SCHEMA and its column migrations) is first brought up to
date by that code, then stamped at the first revision, which describes exactly that schema.
`copy_database(source, target)` moves every row into an empty database, parents before children,
in one transaction on the target, and checks the counts afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, create_engine, event, func, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from app.engine.errors import Conflict, InvalidInput, Unavailable
from app.service.schema import JOB_MIGRATIONS, PROJECT_MIGRATIONS, SCHEMA
from app.service.tables import metadata

BASELINE = "0001"
MIGRATION_LOCK = 0x7EAC_B0C5  # the advisory lock key PostgreSQL migrations hold
COPY_BATCH = 500  # rows per INSERT: a few hundred keeps memory flat for a data dir of any size


def sqlite_url(db_path: Path) -> str:
    return f"sqlite:///{db_path}"


def engine_for(url: str, **options: Any) -> Engine:
    """An engine for a database URL; plain `postgresql://` means the psycopg (v3) driver."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise InvalidInput(_bad_url(url)) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise InvalidInput(_bad_url(url))
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite:
        # Waits up to 30 s for another process's write lock; pooled connections move between threads.
        options["connect_args"] = {"timeout": 30, "check_same_thread": False}
    try:
        engine = create_engine(parsed, **options)
    except NoSuchModuleError:
        raise InvalidInput(_bad_url(url)) from None
    if sqlite:
        event.listen(engine, "connect", _sqlite_connected)
    return engine


def _sqlite_connected(connection: Any, _record: Any) -> None:
    # The driver's own transaction handling off: `transaction` begins them itself (immediate ones
    # for writes), and SQLite's DDL is transactional, so a migration is one transaction too.
    connection.isolation_level = None
    for pragma in ("journal_mode=WAL", "foreign_keys=ON", "synchronous=NORMAL"):
        connection.execute(f"PRAGMA {pragma}")


def _bad_url(url: str) -> str:
    return (
        f"'{url}' is not a database URL Teachbox can use. Write postgresql://USER:PASSWORD@HOST:PORT/NAME "
        "or sqlite:////absolute/path/teachbox.sqlite."
    )


@contextmanager
def transaction(engine: Engine, write: bool = False) -> Iterator[Connection]:
    """One transaction, committed at the end unless it raises. With `write` on SQLite it is
    immediate (it takes the write lock first), so a check-then-act in it is race-free; on
    PostgreSQL a check-then-act locks the rows it checks instead (`FOR UPDATE`)."""
    with engine.connect() as connection:
        # SQLite reads run outside a transaction, each statement on its own (as before Alembic);
        # PostgreSQL's driver begins a transaction by itself.
        if write and _is_sqlite(engine):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        yield connection
        connection.commit()


def _is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


@contextmanager
def _connected(engine: Engine, write: bool = False) -> Iterator[Connection]:
    """One transaction on the database; an unreachable server becomes a sentence."""
    try:
        with transaction(engine, write) as connection:
            yield connection
    except OperationalError as exc:
        raise Unavailable(
            f"Could not reach the database at {engine.url.render_as_string(hide_password=True)}: "
            f"{_first_line(exc.orig)}. Check that it runs and that the URL is right."
        ) from None


def _first_line(error: BaseException | None) -> str:
    lines = str(error).strip().splitlines()
    return lines[0].rstrip(".") if lines else "no answer"


def _alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", "app.service:migrations")
    config.attributes["connection"] = connection
    return config


def current_revision(url: str) -> str | None:
    """The database's revision; None for an empty one or one made before Alembic."""
    engine = engine_for(url)
    try:
        with _connected(engine) as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def upgrade(url: str) -> str:
    """Bring the database at `url` to the newest revision, keeping every row; returns that revision.

    In one transaction that first takes a lock (SQLite's write lock, a PostgreSQL advisory lock),
    so a web server and its workers may start at once: one migrates, the others then find it done."""
    engine = engine_for(url)
    try:
        with _connected(engine, write=True) as connection:
            if not _is_sqlite(engine):
                connection.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK)))
            config = _alembic_config(connection)
            if _made_before_alembic(connection):
                _finish_legacy_columns(connection)
                command.stamp(config, BASELINE)
            command.upgrade(config, "head")
            revision = MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
    return str(revision)


def _made_before_alembic(connection: Connection) -> bool:
    tables = set(inspect(connection).get_table_names())
    return "projects" in tables and "alembic_version" not in tables


def _finish_legacy_columns(connection: Connection) -> None:
    """A SQLite file from before Alembic gets the columns its own code added when it opened one."""
    if connection.dialect.name != "sqlite":
        raise Conflict(
            "This database has Teachbox's tables but no Alembic revision, and only SQLite files "
            "predate Alembic. Copy it from a SQLite data dir with `teachbox db copy` instead."
        )
    # What that code did on every open: the tables it lacks (a file from before accounts or
    # shares), then the columns added since the first release.
    for statement in SCHEMA.split(";"):
        if statement.strip():
            connection.exec_driver_sql(statement)
    for table, migrations in (("jobs", JOB_MIGRATIONS), ("projects", PROJECT_MIGRATIONS)):
        columns = {column["name"] for column in inspect(connection).get_columns(table)}
        for column, statement in migrations.items():
            if column not in columns:
                connection.exec_driver_sql(statement)


def row_counts(connection: Connection) -> dict[str, int]:
    return {
        table.name: int(connection.execute(select(func.count()).select_from(table)).scalar_one())
        for table in metadata.sorted_tables
    }


def copy_database(source_url: str, target_url: str) -> dict[str, int]:
    """Copy every row of `source_url` into the empty database at `target_url`; both are upgraded
    first. Returns the rows per table. Stop the servers and workers that use the source first:
    rows written meanwhile make the check afterwards fail, and nothing is committed then."""
    source, target = engine_for(source_url), engine_for(target_url)
    if source.url == target.url:
        raise InvalidInput("The source and the target are the same database. Name another target.")
    upgrade(source_url)
    upgrade(target_url)
    try:
        with _connected(source) as reading, _connected(target) as writing:
            filled = {name: count for name, count in row_counts(writing).items() if count}
            if filled:
                raise Conflict(
                    f"The target database already holds rows ({_describe(filled)}). Copy into an "
                    "empty database, so that nothing there is overwritten or mixed up."
                )
            for table in metadata.sorted_tables:
                rows = reading.execute(select(table)).mappings()
                while batch := rows.fetchmany(COPY_BATCH):
                    writing.execute(table.insert(), [dict(row) for row in batch])
            expected, copied = row_counts(reading), row_counts(writing)
            if copied != expected:
                raise Conflict(
                    f"The source changed while it was copied (it holds {_describe(expected)}, the "
                    f"copy {_describe(copied)}), so nothing was committed. Stop the server and its "
                    "workers, then copy again."
                )
    finally:
        source.dispose()
        target.dispose()
    return copied


def _describe(counts: dict[str, int]) -> str:
    return ", ".join(f"{count} {name}" for name, count in counts.items())
