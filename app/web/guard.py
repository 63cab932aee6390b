"""The one place that decides whether a request may reach a route at all: which host it names,
which site sent it, and (with TEACHBOX_AUTH=accounts) whose credentials it carries.

- Host: only the loopback names, the bind address and ALLOWED_HOSTS. A page on another site whose
  name its owner points at 127.0.0.1 (DNS rebinding) sends its own name as Host, so it gets 400.
- Site: an unsafe method (POST, PUT, PATCH, DELETE) from another site's page gets 403. Browsers
  say where a request comes from in `Sec-Fetch-Site` and `Origin`; scripts send neither and pass.
- Credentials: with accounts, every /api/ route but the health check, signing in and joining
  needs a session cookie or an `Authorization: Bearer` token (401 otherwise). The page shell,
  /static, /docs and share links (`/s/...`) stay public; their data comes from /api/.
  Whoever it is, is put in `scope["state"]["caller"]` for the routes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send

from app.engine.errors import Forbidden, InvalidRequest, Unauthorized
from app.service.accounts import ANYONE, Accounts, Caller, CredentialKind
from app.web.middleware import send_error

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})
WILDCARD_ADDRESSES = frozenset({"", "0.0.0.0", "::", "[::]"})
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FOREIGN_SITES = frozenset({"cross-site", "same-site"})
MAX_ECHOED_HOST = 100
SESSION_COOKIE = "teachbox_session"
# The /api/ routes anyone may call on a server with accounts (method, path).
PUBLIC_API = frozenset({("POST", "/api/session"), ("POST", "/api/join")})
PUBLIC_PATHS = frozenset({"/api/health"})


HOST_HEADER = re.compile(r"(\[[0-9a-f:.]*\]|[^:\[\]]*)(:[0-9]*)?")


def host_name(host: str) -> str:
    """The name part of a Host header, lower-cased: `[::1]:8000` is `[::1]`, `Localhost:80` is
    `localhost`. A header of another shape is returned whole, so it matches no allowed name."""
    host = host.strip().lower()
    match = HOST_HEADER.fullmatch(host)
    return match[1] if match else host


def allowed_host_names(bind_host: str, extra: Iterable[str]) -> frozenset[str]:
    """Loopback, the address the server binds to (unless it is a wildcard) and the configured names."""
    names = set(LOOPBACK_NAMES) | {host_name(name) for name in extra}
    bind = bind_host.strip().lower()
    if bind not in WILDCARD_ADDRESSES:
        names.add(f"[{bind}]" if ":" in bind and not bind.startswith("[") else bind)
    return frozenset(names)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin_parts(scheme: str, netloc: str) -> tuple[str, str, int | None]:
    parts = urlsplit(f"{scheme}://{netloc.strip().lower()}")
    try:
        port = parts.port
    except ValueError:
        port = -1  # an unreadable port matches nothing
    return scheme, parts.hostname or "", port if port is not None else DEFAULT_PORTS.get(scheme)


def foreign_origin(origin: str | None, scheme: str, host: str) -> bool:
    """Whether an `Origin` header names another origin than the one the request was sent to.

    The server's own origin is the request's scheme and its Host header. Behind a reverse proxy
    on this machine, uvicorn takes the scheme from the proxy's `X-Forwarded-Proto` (it trusts
    that header from 127.0.0.1 only), and the proxy forwards the browser's Host, so a page served
    through the proxy still matches. `null` (a sandboxed frame, a file) is always foreign.
    """
    if origin is None:
        return False
    claimed = urlsplit(origin.strip())
    if claimed.scheme not in DEFAULT_PORTS or not claimed.netloc:
        return True
    return _origin_parts(claimed.scheme, claimed.netloc) != _origin_parts(scheme, host)


def needs_credentials(method: str, path: str) -> bool:
    """Whether, on a server with accounts, this request needs a session or a token."""
    if not path.startswith("/api/") or path in PUBLIC_PATHS:
        return False
    return (method.upper(), path) not in PUBLIC_API


def bearer_token(scope: Scope) -> str | None:
    scheme, _, token = (_header(scope, b"authorization") or "").strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def session_secret(scope: Scope) -> str | None:
    return cookie_parser(_header(scope, b"cookie") or "").get(SESSION_COOKIE) or None


def find_caller(accounts: Accounts, scope: Scope) -> Caller | None:
    """The user whose token (else whose session cookie) the request carries, if it is valid.

    One indexed SQLite read, on the event loop: cheaper than the hop to a thread would be."""
    token = bearer_token(scope)
    if token is not None:
        user = accounts.user_for(token, CredentialKind.TOKEN)
    else:
        secret = session_secret(scope)
        user = accounts.user_for(secret, CredentialKind.SESSION) if secret else None
    return Caller(user) if user else None


NOT_SIGNED_IN = Unauthorized(
    "Sign in first: open Teachbox in the browser, or send `Authorization: Bearer <token>` with a token from POST /api/tokens."
)


class RequestGuard:
    """Refuses requests for hosts other than the allowed names (400), unsafe requests from other
    sites (403) and, with accounts, requests without valid credentials (401)."""

    def __init__(
        self, app: ASGIApp, allowed_hosts: frozenset[str], accounts: Accounts | None = None
    ) -> None:
        self.app = app
        self.allowed_hosts = allowed_hosts
        self.accounts = accounts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = _header(scope, b"host") or ""
        if host_name(host) not in self.allowed_hosts:
            await send_error(send, self._unknown_host(host))
            return
        if scope["method"] in UNSAFE_METHODS and self._from_another_site(scope, host):
            await send_error(
                send,
                Forbidden(
                    "This request came from another site's page, so it was refused. Open Teachbox itself and do it there; scripts that send no Origin header are not affected."
                ),
            )
            return
        caller = ANYONE if self.accounts is None else find_caller(self.accounts, scope)
        if caller is None and needs_credentials(scope["method"], scope["path"]):
            await send_error(send, NOT_SIGNED_IN)
            return
        scope.setdefault("state", {})["caller"] = caller
        await self.app(scope, receive, send)

    def _from_another_site(self, scope: Scope, host: str) -> bool:
        site = (_header(scope, b"sec-fetch-site") or "").strip().lower()
        origin = _header(scope, b"origin")
        return site in FOREIGN_SITES or foreign_origin(origin, scope["scheme"], host)

    def _unknown_host(self, host: str) -> InvalidRequest:
        shown = "".join(ch for ch in host if ch.isprintable())[:MAX_ECHOED_HOST]
        if not shown:
            return InvalidRequest(
                "The request has no Host header. Send one that names this server, such as 127.0.0.1."
            )
        return InvalidRequest(
            f"This server does not answer to the host name '{shown}'. Open it at 127.0.0.1 or localhost, or, behind a reverse proxy, add the proxy's name to TEACHBOX_ALLOWED_HOSTS."
        )
