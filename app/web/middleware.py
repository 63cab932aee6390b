"""ASGI middleware every response passes: security headers, and request-body size and speed limits."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.engine.errors import InternalFailure, TeachboxError, TimedOut, TooLarge
from app.web.errors import headers_of, status_code_of

# Every response, /docs included: scripts and styles only from files this server serves.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)

# A share link's page (`/s/...`): the same, plus WebAssembly for ONNX Runtime Web, and any site
# may embed it in a frame (the point of the embed snippet).
SHARE_PREFIX = "/s/"
SHARE_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; style-src 'self'; "
    "script-src 'self' 'wasm-unsafe-eval'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors *"
)


SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Other sites may neither embed the images and models nor keep a handle on the page.
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def security_headers(path: str) -> dict[str, str]:
    """The headers for a response to `path`: a share page may be framed and run WebAssembly."""
    if path.startswith(SHARE_PREFIX):
        shared = {k: v for k, v in SECURITY_HEADERS.items() if k != "X-Frame-Options"}
        return {"Content-Security-Policy": SHARE_CONTENT_SECURITY_POLICY, **shared}
    return {"Content-Security-Policy": CONTENT_SECURITY_POLICY, **SECURITY_HEADERS}


async def send_error(send: Send, error: TeachboxError) -> None:
    """Answer from inside middleware, before any route ran: the error's JSON sentence and status."""
    status_code = status_code_of(error)
    body = json.dumps({"detail": error.message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *((name.lower().encode(), value.encode()) for name, value in headers_of(error).items()),
    ]
    await send({"type": "http.response.start", "status": status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class SecurityHeaders:
    """Adds the content security policy, frame denial, nosniff and no-referrer to every response.

    A route that crashes before answering gets a JSON 500 from here, with the headers; the
    exception still propagates, so the server logs it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for name, value in security_headers(scope["path"]).items():
                    headers.setdefault(name, value)
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            if not started:
                failure = InternalFailure(
                    "The server failed on this request. Try again; if it keeps failing, check the server log and report it."
                )
                await send_error(send_with_headers, failure)
            raise


class BodyTooLarge(TooLarge):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(
            f"The request is larger than the limit of {max_bytes / 1e6:g} MB. Send fewer or smaller files at a time."
        )


@dataclass
class _Window:
    """One timing window of a request body: when it ends and how many bytes arrived in it."""

    ends: float
    received: int = 0


class BodyLimit:
    """Refuses request bodies over `max_bytes` with 413, declared or streamed, and uploads too slow to wait for.

    A declared Content-Length over the limit is refused before reading; a streamed body raises
    BodyTooLarge from `receive` as soon as it passes the limit, and whatever the route made of
    that exception, the client gets the 413. The body is timed in windows of `window_s`: a window
    in which less than `min_bytes_per_s * window_s` bytes arrive ends the request with 408, so a
    client that sends a byte a second is cut off as surely as one that stops.
    """

    def __init__(
        self, app: ASGIApp, max_bytes: int, window_s: float, min_bytes_per_s: float = 0
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.window_s = window_s
        self.min_bytes_per_s = min_bytes_per_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await send_error(send, BodyTooLarge(self.max_bytes))
            return
        state = {"received": 0, "complete": False, "too_large": False, "replaced": False}
        window = _Window(time.monotonic() + self.window_s)

        async def limited_receive() -> Message:
            if state["complete"]:
                return await receive()
            message = await self._next_message(receive, window)
            if message["type"] == "http.request":
                size = len(message.get("body", b""))
                window.received += size
                state["received"] += size
                state["complete"] = not message.get("more_body", False)
                if state["received"] > self.max_bytes:
                    state["too_large"] = True
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def guarded_send(message: Message) -> None:
            if state["replaced"]:
                return
            if (
                state["too_large"]
                and message["type"] == "http.response.start"
                and message["status"] != 413
            ):
                state["replaced"] = True
                await send_error(send, BodyTooLarge(self.max_bytes))
                return
            await send(message)

        await self.app(scope, limited_receive, guarded_send)

    async def _next_message(self, receive: Receive, window: _Window) -> Message:
        """The next message from the client, unless a whole window passes below the minimum rate."""
        while True:
            remaining = window.ends - time.monotonic()
            if remaining <= 0:
                self._check_rate(window.received)
                window.ends, window.received = time.monotonic() + self.window_s, 0
                continue
            try:
                return await asyncio.wait_for(receive(), remaining)
            except TimeoutError:
                continue

    def _check_rate(self, received: int) -> None:
        if received == 0:
            raise TimedOut(
                f"The upload stalled for {self.window_s:.0f} seconds, so the server stopped waiting. Send it again."
            )
        if received < self.min_bytes_per_s * self.window_s:
            rate, minimum = received / self.window_s / 1e3, self.min_bytes_per_s / 1e3
            raise TimedOut(
                f"The upload arrived at {rate:.2g} KB/s for {self.window_s:.0f} seconds, slower than the minimum of {minimum:g} KB/s, so the server stopped waiting. Check the connection and send it again."
            )
