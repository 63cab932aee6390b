"""`teachbox db upgrade|copy`: the metadata database's migrations, and moving it to PostgreSQL."""

from __future__ import annotations

import argparse

from app.cli.commands import settings_from_args
from app.engine.errors import NotFound


def _data_dir_database(args: argparse.Namespace, must_exist: bool) -> str:
    """The URL of the data dir's SQLite database."""
    from app.service.migrate import sqlite_url
    from app.service.store import Store

    data_dir = settings_from_args(args).data_dir
    path = Store.database_file(data_dir)
    if must_exist and not path.is_file():
        raise NotFound(
            f"There is no Teachbox database at {path}. Pass the server's data folder with --data-dir."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    return sqlite_url(path)


def command_db_upgrade(args: argparse.Namespace) -> int:
    from app.service.migrate import upgrade

    url = settings_from_args(args).database_url or _data_dir_database(args, must_exist=False)
    revision = upgrade(url)
    print(f"The database is at revision {revision}, the newest.")
    return 0


def command_db_copy(args: argparse.Namespace) -> int:
    from app.service.migrate import copy_database

    counts = copy_database(_data_dir_database(args, must_exist=True), args.to)
    rows = ", ".join(f"{count} {table}" for table, count in counts.items())
    print(f"Copied every row ({rows}). Point the server and its workers at the new database.")
    return 0
