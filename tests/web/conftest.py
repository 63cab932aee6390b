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
from tests.web.api_helpers import LOCAL, ServerProcess, image_bytes, make_trainable


@pytest.fixture
def jpeg() -> Callable[..., bytes]:
    return image_bytes


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One embeddings cache and backbone export for the whole session: features of the same bytes are reused."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def make_settings(tmp_path: Path, cache_dir: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "cache_dir": cache_dir,
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
