"""Helpers for driving the model page (a zip's web/ folder, a share link) in Chromium: a static
server with a strict Content-Security-Policy, feeding files, reading the prediction rows."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# What a careful host would send: nothing inline, nothing from elsewhere, WebAssembly allowed.
STRICT_CSP = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; "
    "img-src 'self' blob:; media-src 'self' blob: mediastream:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)

# Any CSP violation becomes a console error, which the `page` fixture fails on.
REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) =>
  console.error(`CSP violation: ${event.violatedDirective} blocked ${event.blockedURI}`));
"""


class _StrictHandler(SimpleHTTPRequestHandler):
    def end_headers(self) -> None:
        self.send_header("Content-Security-Policy", STRICT_CSP)
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


SimpleHTTPRequestHandler.extensions_map[".mjs"] = "text/javascript"
SimpleHTTPRequestHandler.extensions_map[".wasm"] = "application/wasm"


@contextmanager
def strict_static_server(folder: Path) -> Iterator[str]:
    """`python -m http.server` in `folder`, plus the strict CSP header, on a free 127.0.0.1 port."""
    handler = functools.partial(_StrictHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _OnePage(SimpleHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def one_page_server(html: str) -> Iterator[int]:
    """Another site: one HTML page at every path, on a free port (its number is yielded)."""
    handler = type("Page", (_OnePage,), {"body": html.encode()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


READ_ROWS = """() => [...document.querySelectorAll('[data-testid="prediction"]')].map((row) => ({
  text: row.textContent, label: row.querySelector(".prediction-label").textContent,
  probability: Number(row.dataset.probability)}))"""


def wait_until_ready(page) -> None:
    page.wait_for_selector('.model-page[data-state="ready"]', timeout=60_000)


def classify_file(page, path: Path, seq: int) -> list[dict]:
    """Choose `path` in the page's file input; its rows once the page has classified it (the
    page numbers each answer, so an earlier file's rows are never read for this one)."""
    page.get_by_test_id("file-input").set_input_files(str(path))
    page.wait_for_selector(f'#predictions[data-seq="{seq}"]')
    return page.evaluate(READ_ROWS)
