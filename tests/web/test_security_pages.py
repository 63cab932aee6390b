"""Issue 6, "Also": security headers on every page, /docs without a CDN or inline script, and a
server that listens on the loopback address unless told otherwise."""

from __future__ import annotations

from collections.abc import Callable
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

from app.cli.commands import settings_from_args
from app.cli.parser import build_parser
from app.config import Settings
from app.web.middleware import CONTENT_SECURITY_POLICY
from tests.web.api_helpers import ServerProcess

PAGES = ("/", "/docs", "/api/health", "/no-such-page", "/static/js/docs.js", "/openapi.json")


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags_of(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Tags()
    parser.feed(html)
    return parser.tags


def test_the_policy_allows_no_inline_code_no_other_origin_and_no_framing() -> None:
    directives = dict(part.strip().split(" ", 1) for part in CONTENT_SECURITY_POLICY.split(";"))
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'"
    assert "unsafe" not in CONTENT_SECURITY_POLICY and "http" not in CONTENT_SECURITY_POLICY


@pytest.mark.parametrize("path", PAGES)
def test_every_response_carries_the_policy_and_frame_denial(client: TestClient, path: str) -> None:
    headers = client.get(path, headers={"accept": "text/html"}).headers
    assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["cross-origin-resource-policy"] == "same-origin"


@pytest.mark.parametrize("path", ["/", "/docs", "/no-such-page"])
def test_pages_have_no_inline_script_style_or_handlers(client: TestClient, path: str) -> None:
    html = client.get(path, headers={"accept": "text/html"}).text
    tags = tags_of(html)
    assert not [attrs for tag, attrs in tags if tag == "script" and not attrs.get("src")]
    assert not [tag for tag, _ in tags if tag == "style"]
    for _, attrs in tags:
        assert "style" not in attrs and not any(name.startswith("on") for name in attrs), attrs
        for name in ("src", "href"):
            assert not (attrs.get(name) or "").startswith(("http:", "https:", "//")), attrs


def test_the_server_binds_to_the_loopback_address_by_default(
    monkeypatch: pytest.MonkeyPatch, start_server: Callable[[], ServerProcess]
) -> None:
    monkeypatch.delenv("TEACHBOX_HOST", raising=False)
    assert Settings().host == "127.0.0.1"
    args = build_parser().parse_args(["serve"])
    assert settings_from_args(args).host == "127.0.0.1"
    server = start_server()
    listening = _listening_addresses(server.port)
    assert listening == {"127.0.0.1"}, listening


def _listening_addresses(port: int) -> set[str]:
    """The IPv4 and IPv6 addresses with a socket listening on `port`, from /proc/net/tcp{,6}."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        with open(table) as handle:
            next(handle)
            for line in handle:
                local, state = line.split()[1], line.split()[3]
                address, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                    found.add(_address(address) if width == 8 else address)
    return found


def _address(little_endian_hex: str) -> str:
    return ".".join(str(int(little_endian_hex[i : i + 2], 16)) for i in (6, 4, 2, 0))
