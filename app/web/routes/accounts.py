"""Signing in and out, who am I, API tokens, and join codes (only with TEACHBOX_AUTH=accounts).

The session cookie is HttpOnly (no script can read it) and SameSite=Strict: a browser sends it
only with requests that another site's page did not start, even one that sends no Fetch Metadata.
Strict rather than Lax costs nothing here, as the page shell needs no cookie (its scripts ask
/api/me), and it keeps even a link from another site from downloading a model with the cookie.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from app.engine.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    TooManyRequests,
    Unauthorized,
)
from app.service.accounts import User
from app.web.api_models import (
    JoinCodeCreated,
    JoinCodeIn,
    JoinCodeOut,
    JoinIn,
    Me,
    SignIn,
    TokenCreated,
    TokenIn,
    TokenOut,
)
from app.web.deps import AccountsDep, AdminDep, CallerDep, SettingsDep, ThrottleDep
from app.web.guard import SESSION_COOKIE, session_secret
from app.web.openapi import documented

router = APIRouter(prefix="/api", tags=["accounts"])


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _me(user: User) -> Me:
    return Me(username=user.name, admin=user.admin)


def _signed_in_user(caller: CallerDep) -> User:
    if caller.user is None:  # the guard lets no caller without a user through, with accounts
        raise Unauthorized("Sign in first.")
    return caller.user


def _set_session_cookie(response: Response, request: Request, secret: str, hours: float) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=round(hours * 3600),
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",  # behind an https proxy: X-Forwarded-Proto
    )


@router.post("/session", status_code=204, responses=documented(Unauthorized, TooManyRequests))
def sign_in(
    body: SignIn,
    request: Request,
    accounts: AccountsDep,
    throttle: ThrottleDep,
    settings: SettingsDep,
) -> Response:
    """Sign in: 204 with the session cookie. Repeated failures for a name or from an address answer 429."""
    address = _address(request)
    throttle.check(body.username, address)
    user = accounts.authenticate(body.username, body.password)
    if user is None:
        throttle.failed(body.username, address)
        raise Unauthorized(
            "The user name or the password is wrong. Check both and try again; a teacher or admin can set a new password."
        )
    throttle.succeeded(body.username)
    response = Response(status_code=204)
    secret = accounts.start_session(user, settings.session_hours * 3600)
    _set_session_cookie(response, request, secret, settings.session_hours)
    return response


@router.delete("/session", status_code=204, responses=documented(Unauthorized))
def sign_out(request: Request, accounts: AccountsDep, caller: CallerDep) -> Response:
    """Sign out: the session ends on the server, and the cookie is cleared."""
    secret = session_secret(request.scope)
    if secret is not None:
        accounts.end_session(secret)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.get("/me", responses=documented(Unauthorized))
def me(caller: CallerDep) -> Me:
    return _me(_signed_in_user(caller))


@router.post("/tokens", status_code=201, responses=documented(Unauthorized, InvalidInput))
def create_token(
    accounts: AccountsDep, caller: CallerDep, body: TokenIn | None = None
) -> TokenCreated:
    """A token for scripts, shown this once: send it as `Authorization: Bearer <token>`."""
    token, secret = accounts.create_token(_signed_in_user(caller), body.name if body else None)
    return TokenCreated(**TokenOut.of(token).model_dump(), token=secret)


@router.get("/tokens", responses=documented(Unauthorized))
def list_tokens(accounts: AccountsDep, caller: CallerDep) -> list[TokenOut]:
    """Your tokens (without their secrets)."""
    return [TokenOut.of(token) for token in accounts.list_tokens(_signed_in_user(caller))]


@router.delete("/tokens/{tid}", status_code=204, responses=documented(Unauthorized, NotFound))
def revoke_token(tid: str, accounts: AccountsDep, caller: CallerDep) -> Response:
    accounts.revoke_token(_signed_in_user(caller), tid)
    return Response(status_code=204)


@router.post(
    "/join-codes", status_code=201, responses=documented(Unauthorized, Forbidden, InvalidInput)
)
def create_join_code(
    accounts: AccountsDep, admin: AdminDep, body: JoinCodeIn | None = None
) -> JoinCodeCreated:
    """A code that lets students make their own accounts from the sign-in page (admins only)."""
    hours = body.hours if body else JoinCodeIn().hours
    join_code, code = accounts.create_join_code(_signed_in_user(admin), hours)
    return JoinCodeCreated(**JoinCodeOut.of(join_code).model_dump(), code=code)


@router.get("/join-codes", responses=documented(Unauthorized, Forbidden))
def list_join_codes(accounts: AccountsDep, admin: AdminDep) -> list[JoinCodeOut]:
    """The join codes still open (admins only)."""
    return [JoinCodeOut.of(code) for code in accounts.list_join_codes()]


@router.delete(
    "/join-codes/{code_id}",
    status_code=204,
    responses=documented(Unauthorized, Forbidden, NotFound),
)
def end_join_code(code_id: str, accounts: AccountsDep, admin: AdminDep) -> Response:
    """End a join code: nobody can make an account with it any more (accounts made stay)."""
    accounts.end_join_code(code_id)
    return Response(status_code=204)


@router.post(
    "/join",
    status_code=201,
    responses=documented(Unauthorized, Conflict, InvalidInput, TooManyRequests),
)
def join(
    body: JoinIn,
    request: Request,
    response: Response,
    accounts: AccountsDep,
    throttle: ThrottleDep,
    settings: SettingsDep,
) -> Me:
    """Make your own account with a join code, and sign in with it (201 and the session cookie)."""
    address = _address(request)
    throttle.check_address(address)
    try:
        user = accounts.join(body.code, body.username, body.password)
    except Unauthorized:
        throttle.failed_address(address)
        raise
    secret = accounts.start_session(user, settings.session_hours * 3600)
    _set_session_cookie(response, request, secret, settings.session_hours)
    return _me(user)
