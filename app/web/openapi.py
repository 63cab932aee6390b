"""The OpenAPI schema as the contract: every status a route can answer, each with the error model.

Routes name the kinds of error they raise (`responses=documented(NotFound, Conflict)`); the
statuses come from `app.web.errors`, the one place kinds become statuses. What every route can
answer because of the middleware (a refused host, another site's request, a body over the limit)
is added here, once, when the schema is built.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from app.engine.errors import (
    Forbidden,
    InvalidInput,
    InvalidRequest,
    TeachboxError,
    TimedOut,
    TooLarge,
    Unauthorized,
)
from app.web.api_models import ErrorOut, ValidationErrorOut
from app.web.errors import status_of_kind
from app.web.guard import UNSAFE_METHODS, needs_credentials

ERROR_REF = {"$ref": f"#/components/schemas/{ErrorOut.__name__}"}
VALIDATION_REF = {"$ref": f"#/components/schemas/{ValidationErrorOut.__name__}"}
# Why any route may answer these, whatever it does.
GUARD_ERRORS: dict[type[TeachboxError], str] = {
    InvalidRequest: "The request names a host this server does not answer to, or cannot be read.",
}
UNSAFE_ERRORS: dict[type[TeachboxError], str] = {
    Forbidden: "The request came from another site's page.",
}
CREDENTIAL_ERRORS: dict[type[TeachboxError], str] = {
    Unauthorized: "The request carries no valid session cookie or bearer token (TEACHBOX_AUTH=accounts).",
}
# How a request says who it comes from, on a server with accounts.
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "A token from POST /api/tokens."},
    "session": {"type": "apiKey", "in": "cookie", "name": "teachbox_session"},
}
BODY_ERRORS: dict[type[TeachboxError], str] = {
    TooLarge: "The request body is over the limit.",
    TimedOut: "The body arrived too slowly, or stopped.",
}


def _summary(kind: type[TeachboxError]) -> str:
    return (kind.__doc__ or kind.__name__).strip().splitlines()[0]


def documented(
    *kinds: type[TeachboxError], ok: dict[str, Any] | None = None
) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route that raises these kinds of error: each one's status and sentence
    model; `ok` describes a 200 that is not JSON (its content types)."""
    success: dict[int | str, dict[str, Any]] = {200: ok} if ok is not None else {}
    return success | {
        status_of_kind(kind): {
            "model": ValidationErrorOut if issubclass(kind, InvalidInput) else ErrorOut,
            "description": _summary(kind),
        }
        for kind in kinds
    }


def _error_response(description: str, ref: dict[str, str]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ref}}}


def _add(responses: dict[str, Any], errors: dict[type[TeachboxError], str]) -> None:
    for kind, description in errors.items():
        responses.setdefault(str(status_of_kind(kind)), _error_response(description, ERROR_REF))


def _complete(schema: dict[str, Any], accounts: bool) -> dict[str, Any]:
    """Add the middleware's statuses to every operation and give every 422 the model it is sent with;
    with `accounts`, the 401 and the credentials of every operation that needs them."""
    if accounts:
        schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (ErrorOut, ValidationErrorOut):
        components[model.__name__] = model.model_json_schema()
    for path, path_item in schema.get("paths", {}).items():
        for method, operation in path_item.items():
            responses = operation.setdefault("responses", {})
            _add(responses, GUARD_ERRORS)
            if accounts and needs_credentials(method, path):
                _add(responses, CREDENTIAL_ERRORS)
                operation["security"] = [{"bearer": []}, {"session": []}]
            if method.upper() in UNSAFE_METHODS:
                _add(responses, UNSAFE_ERRORS)
            if "requestBody" in operation:
                _add(responses, BODY_ERRORS)
            if "422" in responses:
                responses["422"] = _error_response(
                    "The request's values cannot be used (out of range, malformed, too few images).",
                    VALIDATION_REF,
                )
    # FastAPI's own 422 models describe a body this API never sends.
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    return schema


def install_openapi(app: FastAPI) -> None:
    """Serve the completed schema at /openapi.json (built once, on first request)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if not getattr(app.state, "openapi_complete", False):
            _complete(build(), accounts=app.state.settings.auth == "accounts")
            app.state.openapi_complete = True
        return build()

    app.openapi = openapi  # type: ignore[method-assign]
