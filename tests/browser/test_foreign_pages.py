"""Issue 14 in a real browser: a page on another site can neither drive Teachbox (cross-site
requests) nor, with its name pointed at 127.0.0.1, read or change it (DNS rebinding)."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Page

from tests.browser.conftest import FOREIGN_SITE, ConsoleLog, LiveServer
from tests.web.api_helpers import BLUE, RED, image_bytes, wait_for_job

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("remove_projects")]


class _BlankPage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!doctype html><title>another site</title>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def foreign_site() -> Iterator[str]:
    """Another origin: a blank page at http://evil.example:<its own port>/."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BlankPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{FOREIGN_SITE}:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


# What a foreign page can send without asking the server first: "simple" requests, no-cors. The
# browser hides the answers from the page (Cross-Origin-Resource-Policy), so only the server's
# state says whether they did anything.
ATTACK = """async ([api, pid, cid, jpeg]) => {
  const bytes = Uint8Array.from(atob(jpeg), (c) => c.charCodeAt(0));
  const form = new FormData();
  form.append("files", new Blob([bytes], {type: "image/jpeg"}), "a.jpg");
  const send = (path, init) => fetch(api + path, {mode: "no-cors", method: "POST", ...init})
      .then(() => "answered", () => "hidden");
  return [
    await send(`/api/projects/${pid}/classes/${cid}/images`, {body: form}),
    await send(`/api/projects/${pid}/jobs`, {}),
    await send(`/api/projects/${pid}/compare`, {}),
  ];
}"""


def test_a_page_on_another_site_cannot_change_anything(
    page: Page, live_server: LiveServer, foreign_site: str, console: ConsoleLog
) -> None:
    api = httpx.Client(base_url=live_server.url)
    pid = api.post("/api/projects", json={"name": "ours"}).json()["id"]
    cids = [api.post(f"/api/projects/{pid}/classes", json={"name": n}).json()["id"] for n in "ab"]
    for cid, colour in zip(cids, (RED, BLUE), strict=True):
        files = [
            ("files", (f"{i}.jpg", image_bytes(colour, seed=i), "image/jpeg")) for i in range(3)
        ]
        assert api.post(f"/api/projects/{pid}/classes/{cid}/images", files=files).status_code == 200
    page.goto(foreign_site)
    jpeg = base64.b64encode(image_bytes(RED, seed=99)).decode()
    assert page.evaluate(ATTACK, [live_server.url, pid, cids[0], jpeg]) == ["hidden"] * 3
    assert [c["image_count"] for c in api.get(f"/api/projects/{pid}").json()["classes"]] == [3, 3]
    assert api.get(f"/api/projects/{pid}/jobs").json() == []
    # the same requests from a script (no Origin, no Fetch Metadata) do what they say
    job = api.post(f"/api/projects/{pid}/jobs")
    assert job.status_code == 202
    assert api.post(f"/api/jobs/{job.json()['id']}/cancel").status_code == 202
    wait_for_job(api, job.json()["id"], {"cancelled", "succeeded", "failed"})
    console.errors.clear()  # the browser logs the answers it hid, which are the point


def test_a_rebound_name_gets_nothing_from_the_server(
    page: Page, live_server: LiveServer, console: ConsoleLog
) -> None:
    port = urlsplit(live_server.url).port
    rebound = f"http://{FOREIGN_SITE}:{port}"
    response = page.goto(f"{rebound}/api/projects")
    assert response is not None and response.status == 400
    assert "does not answer to the host name" in response.json()["detail"]
    created = page.evaluate(
        """async () => (await fetch("/api/projects", {method: "POST",
            headers: {"Content-Type": "application/json"}, body: '{"name": "theirs"}'})).status"""
    )
    assert created == 400
    names = [p["name"] for p in httpx.get(f"{live_server.url}/api/projects").json()]
    assert "theirs" not in names
    console.errors.clear()  # the browser logs the two refusals, which are the point
