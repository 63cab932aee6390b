"""A real PostgreSQL for tests: Debian's initdb and pg_ctl (make setup installs them), one throwaway
cluster in a temporary folder on a free loopback port, run as the `postgres` user when the tests
run as root (PostgreSQL refuses to run as root)."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest


def _binary(name: str) -> str | None:
    """initdb and pg_ctl: on PATH, or in Debian's versioned folder, which is not on PATH."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(versions[-1]) if versions else None


def postgres_missing() -> str | None:
    """Why a real PostgreSQL cannot be started here, or None when it can."""
    for name in ("initdb", "pg_ctl"):
        if _binary(name) is None:
            return f"{name} is not installed (make setup installs Debian's postgresql through `make services`)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` user to run PostgreSQL as"
        if shutil.which("runuser") is None:
            return "running as root without runuser to start PostgreSQL as the `postgres` user"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresServer:
    """One cluster with trust authentication on loopback only; `new_database()` makes empty ones."""

    def __init__(self) -> None:
        # Not pytest's tmp_path: its parents are root's and closed to the `postgres` user.
        self.folder = Path(tempfile.mkdtemp(prefix="teachbox-pg-"))
        self.port = _free_port()
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            entry = pwd.getpwnam("postgres")
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        data = self.folder / "data"
        self._run(
            _binary("initdb"),
            "--auth=trust",
            "--username=postgres",
            "--encoding=UTF8",
            "--no-sync",
            "-D",
            str(data),
        )
        # Room for the connections of many apps a session's tests start (each pools its own).
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -k {self.folder} -c fsync=off "
            "-c max_connections=500"
        )
        self._run(
            _binary("pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(self.folder / "server.log"),
            "-o",
            options,
            "-w",
            "start",
        )
        self._data = data

    def _run(self, *argv: str | None) -> None:
        command = [str(arg) for arg in argv]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            log = self.folder / "server.log"
            raise AssertionError(
                f"{' '.join(command)} failed: {result.stdout}{result.stderr}"
                + (log.read_text() if log.exists() else "")
            )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """The URL of a new, empty database in this cluster."""
        import psycopg

        name = "t" + uuid.uuid4().hex[:12]
        with psycopg.connect(
            f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True
        ) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        try:
            self._run(_binary("pg_ctl"), "-D", str(self._data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def start_postgres() -> PostgresServer:
    reason = postgres_missing()
    if reason is not None:
        pytest.skip(f"No real PostgreSQL for this test: {reason}.")
    return PostgresServer()
