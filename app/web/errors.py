"""Errors as the web serves them: each kind of error mapped to its status, a JSON sentence for the API, a page for browsers."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from jinja2 import TemplateNotFound
from starlette.exceptions import HTTPException
from starlette.responses import Response

from app.engine.errors import (
    Conflict,
    Forbidden,
    InternalFailure,
    InvalidInput,
    InvalidRequest,
    NotFound,
    StorageFull,
    TeachboxError,
    TimedOut,
    TooLarge,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
)

# Starlette's own errors (no route, wrong method) get sentences that say what to do, too.
ROUTING_SENTENCES = {
    404: "There is nothing at this address. See /docs for the paths of the API.",
    405: "This address does not accept this method. See /docs for the methods it accepts.",
}
_VALIDATION_LOCATIONS = frozenset({"body", "query", "path", "header", "cookie"})
MAX_ECHOED_CHARS = 200


def describe_validation_errors(errors: Sequence[dict[str, Any]]) -> str:
    """One sentence from pydantic's errors, e.g. "epochs: Input should be less than or equal to 500"."""
    parts = []
    for error in errors[:5]:
        if error.get("type") == "json_invalid":
            parts.append("the body is not valid JSON")
            continue
        where = ".".join(
            str(part) for part in error.get("loc", ()) if part not in _VALIDATION_LOCATIONS
        )
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ").rstrip(".")
        parts.append(f"{where}: {message}" if where else message)
    return f"The request is not valid ({'; '.join(parts)}). Correct it and send it again."


def _wants_page(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return not request.url.path.startswith("/api/") and "text/html" in accept


def error_response(
    request: Request, message: str, status_code: int, headers: dict[str, str] | None = None
) -> Response:
    """JSON `{"detail": sentence}` for the API; the `error.html` page, where there is one, for browsers."""
    if _wants_page(request):
        context = {"message": message, "status_code": status_code}
        try:
            return request.app.state.templates.TemplateResponse(
                request, "error.html", context, status_code=status_code, headers=headers
            )
        except TemplateNotFound:
            pass
    return JSONResponse({"detail": message}, status_code=status_code, headers=headers)


# The one place where a kind of error becomes an HTTP status.
STATUS_CODES: dict[type[TeachboxError], int] = {
    InvalidRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    TimedOut: 408,
    Conflict: 409,
    TooLarge: 413,
    UnsupportedMediaType: 415,
    InvalidInput: 422,
    TooManyRequests: 429,
    InternalFailure: 500,
    Unavailable: 503,
    StorageFull: 507,
}


def status_of_kind(kind: type[TeachboxError]) -> int:
    """The status of the nearest kind this kind belongs to; 400 for a kind of no finer kind."""
    for parent in kind.__mro__:
        if parent in STATUS_CODES:
            return STATUS_CODES[parent]
    return 400


def status_code_of(error: TeachboxError) -> int:
    return status_of_kind(type(error))


# HTTP requires a 401 to name the scheme that would be accepted; Bearer, not Basic, so that a
# browser shows the page's own sign-in form rather than its password dialog.
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="Teachbox"'}


def headers_of(error: TeachboxError) -> dict[str, str]:
    """The headers an error's answer carries besides the usual ones."""
    return dict(CHALLENGE) if isinstance(error, Unauthorized) else {}


async def handle_teachbox_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TeachboxError)
    return error_response(request, exc.message, status_code_of(exc), headers_of(exc) or None)


def json_safe(value: Any) -> Any:
    """pydantic's errors echo the input: NaN and infinities (which Python's JSON reader accepts)
    become strings, as JSON has no such numbers, lone surrogates their escapes, and long strings
    are cut short."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        # a lone surrogate ("\udc00" in the JSON) has no UTF-8 form: echo it as its escape
        value = value.encode("utf-8", "backslashreplace").decode("utf-8")
        return value[:MAX_ECHOED_CHARS] + "…" if len(value) > MAX_ECHOED_CHARS else value
    if isinstance(value, dict):
        return {json_safe(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_safe(item) for item in value]
    return value


async def handle_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = json_safe(jsonable_encoder(exc.errors()))
    return JSONResponse(
        {"detail": describe_validation_errors(errors), "errors": errors}, status_code=422
    )


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=exc.headers)
    detail = exc.detail
    if detail in ("Not Found", "Method Not Allowed"):
        detail = ROUTING_SENTENCES.get(exc.status_code, detail)
    headers = dict(exc.headers) if exc.headers else {}
    if exc.status_code == 405:
        headers["Allow"] = allowed_methods(request, headers.get("Allow", ""))
    return error_response(request, str(detail), exc.status_code, headers or None)


def allowed_methods(request: Request, routed: str) -> str:
    """Every method the API accepts at this path, as its schema lists them: Starlette's 405 names
    only the methods of the first route that matched the path (`routed`, kept for the pages)."""
    known = getattr(request.app.state, "methods_by_path", None)
    if known is None:
        known = request.app.state.methods_by_path = methods_by_path(request.app)
    for pattern, methods in known:
        if pattern.fullmatch(request.url.path):
            return ", ".join(sorted(methods))
    return routed


def methods_by_path(app: FastAPI) -> list[tuple[re.Pattern[str], frozenset[str]]]:
    """Each path of the schema as a pattern, with the methods it accepts (HEAD wherever GET is)."""
    found = []
    for template, item in app.openapi().get("paths", {}).items():
        pattern = re.compile(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)))
        methods = {method.upper() for method in item}
        found.append((pattern, frozenset(methods | ({"HEAD"} if "GET" in methods else set()))))
    return found


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(TeachboxError, handle_teachbox_error)
    app.add_exception_handler(HTTPException, handle_http_exception)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
