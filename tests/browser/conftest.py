"""Real Chromium against the real app: uvicorn on a free port, a temporary data dir, console errors fail."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn

from tests.conftest import ROOT

CHROMIUM = Path("/usr/bin/chromium")
FOREIGN_SITE = "evil.example"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # A foreign site whose name points at this machine, as a DNS-rebinding attacker's would.
    f"--host-resolver-rules=MAP {FOREIGN_SITE} 127.0.0.1",
]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@dataclass
class LiveServer:
    url: str
    data_dir: Path
    server: uvicorn.Server
    thread: threading.Thread


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def serve_in_thread(app: object, data_dir: Path) -> Iterator[LiveServer]:
    """Run an app under uvicorn in a thread, on a free 127.0.0.1 port, until the block ends."""
    sock = _free_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start; see the log above")
        time.sleep(0.05)
    host, port = sock.getsockname()
    yield LiveServer(f"http://{host}:{port}", data_dir, server, thread)
    server.should_exit = True
    thread.join(timeout=15)
    sock.close()


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The real app under uvicorn in a thread, on a free 127.0.0.1 port, with its own data dir."""
    from app.config import Settings
    from app.web.factory import create_app

    data_dir = tmp_path_factory.mktemp("teachbox-data")
    with serve_in_thread(create_app(Settings(data_dir=data_dir)), data_dir) as server:
        yield server


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} is absent: install Debian's Chromium (`apt-get install chromium`, or `make browser`)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()


@dataclass
class ConsoleLog:
    """Console errors, uncaught exceptions and failed requests seen by a page."""

    errors: list[str] = field(default_factory=list)

    def watch(self, page) -> None:
        page.on(
            "console",
            lambda message: (
                message.type == "error" and self.errors.append(f"console: {message.text}")
            ),
        )
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        page.on("requestfailed", self._request_failed)

    def _request_failed(self, request) -> None:
        # A stream or a download that the page closes on purpose is not an error.
        if request.failure and "ERR_ABORTED" not in request.failure:
            self.errors.append(f"request failed: {request.method} {request.url} {request.failure}")


@pytest.fixture
def console() -> ConsoleLog:
    return ConsoleLog()


@pytest.fixture
def context(browser, live_server: LiveServer):
    context = browser.new_context(base_url=live_server.url, viewport=DESKTOP, accept_downloads=True)
    context.grant_permissions(["camera"], origin=live_server.url)
    context.set_default_timeout(20_000)
    yield context
    context.close()


@pytest.fixture
def page(context, console: ConsoleLog):
    page = context.new_page()
    console.watch(page)
    yield page
    page.close()
    assert console.errors == [], "the browser reported errors:\n" + "\n".join(console.errors)


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


@pytest.fixture
def remove_projects(live_server: LiveServer) -> Iterator[None]:
    """Delete the projects a test made, so that the page's other tests find the server as they
    expect (the first visit, above all, finds no project). Modules opt in with `usefixtures`."""
    with httpx.Client(base_url=live_server.url, timeout=60) as client:
        before = {p["id"] for p in client.get("/api/projects").json()}
        yield
        for project in client.get("/api/projects").json():
            if project["id"] not in before:
                client.delete(f"/api/projects/{project['id']}")
