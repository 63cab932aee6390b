"""The real app against temporary data dirs, with real image bytes; helpers live in api_helpers.py."""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.web.factory import create_app
from tests.postgres_helpers import PostgresServer
from tests.web.api_helpers import LOCAL, ServerProcess, image_bytes, make_trainable


@pytest.fixture
def jpeg() -> Callable[..., bytes]:
    return image_bytes


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One embeddings cache and backbone export for the whole session: features of the same bytes are reused."""
    return tmp_path_factory.mktemp("cache")


# The API suite's core runs twice: on the data dir's SQLite file and on a real PostgreSQL.
ON_POSTGRESQL_TOO = {
    "test_projects",
    "test_classes",
    "test_images",
    "test_jobs",
    "test_accounts",
    "test_share",
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    sqlite_only = metafunc.definition.get_closest_marker("sqlite_only") is not None
    if "database" in metafunc.fixturenames and module in ON_POSTGRESQL_TOO and not sqlite_only:
        metafunc.parametrize("database", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def database(request: pytest.FixtureRequest) -> str | None:
    """The TEACHBOX_DATABASE_URL of the test's app: None (the data dir's SQLite file), or a new
    empty database on the session's real PostgreSQL."""
    if getattr(request, "param", "sqlite") == "sqlite":
        return None
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.new_database()


@pytest.fixture
def make_settings(tmp_path: Path, cache_dir: Path, database: str | None) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "cache_dir": cache_dir,
            "database_url": database,
            "embed_on_upload": False,
            "sse_heartbeat_s": 0.2,
        }
        return Settings(**(values | overrides))

    return make


@pytest.fixture
def make_client(make_settings: Callable[..., Settings]) -> Iterator[Callable[..., TestClient]]:
    """Start the real app (lifespan included) with settings overrides; everything is closed afterwards."""
    with ExitStack() as stack:

        def make(**overrides: Any) -> TestClient:
            return stack.enter_context(
                TestClient(create_app(make_settings(**overrides)), base_url=LOCAL)
            )

        yield make


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


@pytest.fixture
def trainable(client: TestClient) -> tuple[str, dict[str, str]]:
    return make_trainable(client)


@pytest.fixture
def start_server(tmp_path: Path, cache_dir: Path) -> Iterator[Callable[..., ServerProcess]]:
    """A real server process; keyword arguments are settings, e.g. `allowed_hosts="a.example"`."""
    servers: list[ServerProcess] = []

    def start(**settings: str) -> ServerProcess:
        servers.append(
            ServerProcess(tmp_path / "data", cache_dir, tmp_path / "server.log", **settings)
        )
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def zip_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The entries the server opens for reading (a spy on zipfile; the real method still runs)."""
    opened: list[str] = []
    real_open = zipfile.ZipFile.open

    def spying_open(archive: zipfile.ZipFile, name: Any, mode: str = "r", **kwargs: Any) -> Any:
        if mode == "r":
            opened.append(name.filename if isinstance(name, zipfile.ZipInfo) else str(name))
        return real_open(archive, name, mode, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", spying_open)
    return opened
