"""The metadata database's migrations and `teachbox db copy`, on real SQLite files and a real PostgreSQL.

A data dir made by the code from before Alembic is stamped at the first revision without losing a
row; a fresh database upgraded by Alembic has exactly that schema; copying moves every row, and
refuses a target that already holds some.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from app.cli.main import main
from app.engine.errors import Conflict, InvalidInput, Unavailable
from app.engine.params import TrainParams
from app.service import migrate
from app.service.accounts import Accounts
from app.service.records import JobStatus
from app.service.schema import JOB_MIGRATIONS, PROJECT_MIGRATIONS, SCHEMA
from app.service.store import Store
from app.service.tables import jobs, metadata, projects, users
from app.service.uploads import prepare_image
from tests.concurrently import at_once
from tests.postgres_helpers import PostgresServer
from tests.web.api_helpers import BLUE, RED, image_bytes


@pytest.fixture
def postgres(postgres_server: PostgresServer) -> PostgresServer:
    return postgres_server


def filled_data_dir(data_dir: Path) -> Store:
    """A data dir with a row in every table, made through the store and accounts as a server would."""
    store = Store(data_dir)
    accounts = Accounts(store.db_path)
    teacher = accounts.add_user("Teacher", "a long enough password", admin=True)
    accounts.start_session(teacher, 3600)
    accounts.create_token(teacher, "laptop")
    _, code = accounts.create_join_code(teacher, hours=1)
    student = accounts.join(code, "student", "another long password")
    project = store.create_project("colours", owner_id=student.id)
    for name, colour in (("red", RED), ("blue", BLUE)):
        image_class = store.create_class(project.id, name)
        for i in range(3):
            data = image_bytes(colour, seed=i)
            store.add_image(image_class, f"{name}-{i}.jpg", prepare_image(data, 10_000_000))
    job = store.create_job(project.id, TrainParams(epochs=1))
    store.start_job(job.id)
    for kind in ("status", "epoch", "done"):
        store.add_next_event(job.id, kind, f'{{"type": "{kind}"}}')
    store.finish_job(job.id, JobStatus.SUCCEEDED, metrics={"val_accuracy": 0.5})
    store.share_project(project.id)
    store.create_project("empty")
    return store


def made_by_the_code_before_alembic(path: Path) -> Path:
    """A database file as the code before Alembic made one: its SCHEMA, then its column migrations."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(SCHEMA)
        for table, migrations in (("jobs", JOB_MIGRATIONS), ("projects", PROJECT_MIGRATIONS)):
            columns = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
            for column, statement in migrations.items():
                if column not in columns:
                    db.execute(statement)
    return path


def filled_before_alembic(tmp_path: Path) -> Path:
    """The data dir's database made by the code before Alembic, holding the rows today's store
    and accounts write (a row in every table)."""
    rows = filled_data_dir(tmp_path / "today").db_path
    legacy = made_by_the_code_before_alembic(tmp_path / "data" / "teachbox.sqlite")
    with closing(sqlite3.connect(legacy, isolation_level=None)) as db:
        db.execute("ATTACH DATABASE ? AS today", (str(rows),))
        for table in metadata.sorted_tables:
            columns = ", ".join(column.name for column in table.columns)
            db.execute(
                f"INSERT INTO main.{table.name} ({columns}) SELECT {columns} FROM today.{table.name}"
            )
    return legacy


def all_rows(url: str) -> dict[str, list[dict[str, object]]]:
    engine = migrate.engine_for(url)
    try:
        with engine.connect() as connection:
            return {
                table.name: [
                    dict(row)
                    for row in connection.execute(
                        select(table).order_by(*table.primary_key.columns)
                    ).mappings()
                ]
                for table in metadata.sorted_tables
            }
    finally:
        engine.dispose()


def sqlite_schema(path: Path) -> dict[str, object]:
    """What SQLite enforces of a file's schema: columns (affinity, NOT NULL, default, key), foreign
    keys with their ON DELETE, and indexes (unique, partial, columns). A primary key counts as NOT
    NULL: the old schema's TEXT keys accept NULL by a quirk of SQLite (no id is ever NULL), where
    Alembic's say NOT NULL, as PostgreSQL's keys always are."""
    affinity = {"TEXT": "TEXT", "INTEGER": "INTEGER", "REAL": "REAL", "FLOAT": "REAL"}
    with sqlite3.connect(path) as db:
        tables = [
            row[0]
            for row in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'alembic%'"
            )
        ]
        schema: dict[str, object] = {}
        for table in tables:
            columns = {
                name: (affinity[kind], bool(notnull or pk), default, pk)
                for _, name, kind, notnull, default, pk in db.execute(f"PRAGMA table_info({table})")
            }
            keys = sorted(
                (row[2], row[3], row[4], row[6])
                for row in db.execute(f"PRAGMA foreign_key_list({table})")
            )
            indexes = sorted(
                (
                    unique,
                    partial,
                    tuple(info[2] for info in db.execute(f"PRAGMA index_info('{name}')")),
                )
                for _, name, unique, _, partial in db.execute(f"PRAGMA index_list({table})")
            )
            schema[table] = (columns, keys, indexes)
    return schema


def test_the_first_revision_is_the_schema_made_before_alembic(tmp_path: Path) -> None:
    made_before = made_by_the_code_before_alembic(tmp_path / "before.sqlite")
    fresh = tmp_path / "fresh.sqlite"
    assert migrate.upgrade(migrate.sqlite_url(fresh)) == migrate.BASELINE
    assert sqlite_schema(fresh) == sqlite_schema(made_before)


def test_upgrading_a_data_dir_from_before_alembic_keeps_every_row(tmp_path: Path) -> None:
    url = migrate.sqlite_url(filled_before_alembic(tmp_path))
    before = all_rows(url)
    assert all(before.values()), "a row in every table"
    assert migrate.current_revision(url) is None

    assert migrate.upgrade(url) == migrate.BASELINE
    assert migrate.upgrade(url) == migrate.BASELINE  # a second time changes nothing

    assert migrate.current_revision(url) == migrate.BASELINE
    assert all_rows(url) == before
    reopened = Store(tmp_path / "data")
    assert [project.name for project in reopened.list_projects()] == ["colours", "empty"]


def test_the_oldest_data_dir_gets_its_later_columns_before_it_is_stamped(tmp_path: Path) -> None:
    oldest = tmp_path / "teachbox.sqlite"
    with sqlite3.connect(oldest) as db:  # the first release: no kinds, leases or owners yet
        db.executescript(SCHEMA)
        db.execute("INSERT INTO projects (id, name, created_at) VALUES ('p' , 'old', 1.0)")
    migrate.upgrade(migrate.sqlite_url(oldest))
    assert sqlite_schema(oldest) == sqlite_schema(made_by_the_code_before_alembic(tmp_path / "b"))
    assert all_rows(migrate.sqlite_url(oldest))["projects"] == [
        {"id": "p", "name": "old", "created_at": 1.0, "owner_id": None}
    ]


def test_postgresql_gets_every_table_with_its_rules(postgres: PostgresServer) -> None:
    url = postgres.new_database()
    assert migrate.current_revision(url) is None
    assert migrate.upgrade(url) == migrate.BASELINE
    assert migrate.upgrade(url) == migrate.BASELINE
    engine = migrate.engine_for(url)
    try:
        with engine.connect() as connection:  # the lower(name) index and the partial one included
            assert compare_metadata(MigrationContext.configure(connection), metadata) == []
        with pytest.raises(IntegrityError), engine.begin() as connection:
            for name in ("Ada", "ada"):  # names are compared without case, as in SQLite
                connection.execute(
                    insert(users).values(id=name, name=name, password_hash="x", created_at=1.0)
                )
        active = pytest.raises(IntegrityError, match="one_active_job_per_project")
        with active, engine.begin() as connection:
            connection.execute(insert(projects).values(id="p", name="p", created_at=1.0))
            for job_id, status in (("a", "succeeded"), ("b", "queued"), ("c", "running")):
                connection.execute(insert(jobs).values(**_job(job_id, status)))
    finally:
        engine.dispose()


def _job(job_id: str, status: str) -> dict[str, object]:
    return {
        "id": job_id,
        "project_id": "p",
        "status": status,
        "params": "{}",
        "labels": "[]",
        "image_count": 0,
        "snapshot": "[]",
        "created_at": 1.0,
    }


def test_copy_moves_every_row_to_postgresql(tmp_path: Path, postgres: PostgresServer) -> None:
    store = filled_data_dir(tmp_path / "data")
    source, target = migrate.sqlite_url(store.db_path), postgres.new_database()
    expected = all_rows(source)

    counts = migrate.copy_database(source, target)

    assert counts == {name: len(rows) for name, rows in expected.items()}
    assert all(counts.values()), "every table holds a row, so every table was copied"
    assert all_rows(target) == expected
    assert migrate.current_revision(target) == migrate.BASELINE


def test_copy_refuses_a_target_that_holds_rows(tmp_path: Path, postgres: PostgresServer) -> None:
    first = filled_data_dir(tmp_path / "first")
    second = Store(tmp_path / "second")
    second.create_project("another")
    target = postgres.new_database()
    migrate.copy_database(migrate.sqlite_url(first.db_path), target)
    copied = all_rows(target)

    with pytest.raises(Conflict, match="already holds rows"):
        migrate.copy_database(migrate.sqlite_url(second.db_path), target)
    assert all_rows(target) == copied


def test_copy_explains_a_bad_or_unreachable_target(tmp_path: Path) -> None:
    source = migrate.sqlite_url(Store(tmp_path / "data").db_path)
    with pytest.raises(InvalidInput, match="postgresql://USER:PASSWORD@HOST:PORT/NAME"):
        migrate.copy_database(source, "mysql://someone@127.0.0.1/teachbox")
    with pytest.raises(InvalidInput, match="same database"):
        migrate.copy_database(source, source)
    with pytest.raises(Unavailable, match="Could not reach the database"):
        migrate.copy_database(source, "postgresql://someone@127.0.0.1:1/teachbox")


def test_the_db_commands_upgrade_and_copy_a_data_dir(
    tmp_path: Path, postgres: PostgresServer, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    filled_data_dir(data_dir)
    target = postgres.new_database()

    assert main(["db", "upgrade", "--data-dir", str(data_dir)]) == 0
    assert main(["db", "upgrade", "--database-url", target]) == 0
    assert main(["db", "copy", "--data-dir", str(data_dir), "--to", target]) == 0
    assert (
        "Copied every row (2 users, 2 credentials, 1 join_codes, 2 projects"
        in capsys.readouterr().out
    )
    assert main(["db", "copy", "--data-dir", str(tmp_path / "nowhere"), "--to", target]) == 2
    assert "There is no Teachbox database" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_processes_opening_a_new_database_at_once_migrate_it_once(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A web server and its workers start together: each upgrades, under the migration lock."""
    if kind == "sqlite":
        url = migrate.sqlite_url(tmp_path / "teachbox.sqlite")
    else:
        url = request.getfixturevalue("postgres_server").new_database()
    outcomes = at_once([lambda: migrate.upgrade(url)] * 4)
    assert outcomes == [migrate.BASELINE] * 4
