"""Accounts for a shared server: users, sign-in sessions, API tokens and join codes.

Passwords are stored as argon2id hashes (argon2-cffi's defaults, RFC 9106's low-memory profile:
64 MiB, 3 passes). Sessions, tokens and join codes are random secrets of which only the sha256 is
stored: a copy of the database lets nobody sign in. Nothing here logs a secret.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import (
    ColumnElement,
    Connection,
    RowMapping,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from app.engine.errors import Conflict, InvalidInput, NotFound, Unauthorized
from app.service.database import Database
from app.service.records import new_id
from app.service.tables import credentials, insertion_order, join_codes, users

MIN_PASSWORD = 8
MAX_PASSWORD = 1024
USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
USERNAME_RULE = (
    "1 to 64 letters (a-z, A-Z), digits, '.', '_', '@' or '-', starting with a letter or digit"
)
TOKEN_PREFIX = "tbt_"  # recognisable, so that secret scanners and people can tell what leaked
JOIN_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud or off a board
JOIN_LENGTH = 8

HASHER = PasswordHasher()


class CredentialKind(StrEnum):
    SESSION = "session"
    TOKEN = "token"


@dataclass(frozen=True, kw_only=True)
class User:
    id: str
    name: str
    admin: bool
    created_at: float


@dataclass(frozen=True, kw_only=True)
class Token:
    """An API token as listed: its id and name, never its secret."""

    id: str
    name: str | None
    created_at: float


@dataclass(frozen=True, kw_only=True)
class JoinCode:
    """A join code as listed; the code itself is shown once, when it is made."""

    id: str
    created_by: str
    created_at: float
    expires_at: float
    uses: int


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_username(name: str) -> str:
    if not USERNAME.fullmatch(name):
        raise InvalidInput(f"'{name[:64]}' cannot be a user name: a user name has {USERNAME_RULE}.")
    return name


def check_password(password: str) -> str:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidInput(
            f"A password needs {MIN_PASSWORD} to {MAX_PASSWORD} characters; this one has {len(password)}. Choose a longer one."
        )
    return password


def normal_join_code(code: str) -> str:
    """As typed: case, spaces and dashes do not matter."""
    return re.sub(r"[\s-]", "", code).upper()


@cache
def _decoy_hash() -> str:
    """Checked against when the name is unknown, so that a wrong name takes as long as a wrong password."""
    return HASHER.hash(secrets.token_urlsafe(16))


def _named(name: str) -> ColumnElement[bool]:
    """Names are compared without case (user names are ASCII, so lower() is exact on both databases)."""
    return func.lower(users.c.name) == name.lower()


def _user(row: RowMapping) -> User:
    return User(
        id=row["id"], name=row["name"], admin=bool(row["admin"]), created_at=row["created_at"]
    )


def _no_user(name: str) -> NotFound:
    return NotFound(f"There is no user named '{name}'. List them with `teachbox users list`.")


# Built once: every request with a session or token runs it.
USER_FOR_SECRET = (
    select(users)
    .join(credentials, credentials.c.user_id == users.c.id)
    .where(
        credentials.c.digest == bindparam("digest"),
        credentials.c.kind == bindparam("kind"),
        credentials.c.expires_at.is_(None) | (credentials.c.expires_at > bindparam("now")),
    )
)


class Accounts(Database):
    """The users, credentials and join_codes tables of the data dir's database. Thread-safe."""

    # Users

    def add_user(self, name: str, password: str, admin: bool = False) -> User:
        user = User(id=new_id(), name=check_username(name), admin=admin, created_at=time.time())
        password_hash = HASHER.hash(check_password(password))
        with self._db(write=True) as db:
            self._insert_user(db, user, password_hash)
        return user

    def _insert_user(self, db: Connection, user: User, password_hash: str) -> None:
        try:
            db.execute(
                insert(users).values(
                    id=user.id,
                    name=user.name,
                    password_hash=password_hash,
                    admin=int(user.admin),
                    created_at=user.created_at,
                )
            )
        except IntegrityError:
            raise Conflict(f"The name '{user.name}' is taken. Choose another one.") from None

    def list_users(self) -> list[User]:
        with self._db() as db:
            rows = db.execute(select(users).order_by(*insertion_order(users))).mappings()
            return [_user(row) for row in rows]

    def user_count(self) -> int:
        with self._db() as db:
            return int(db.execute(select(func.count()).select_from(users)).scalar_one())

    def remove_user(self, name: str) -> None:
        """The user, their sessions, tokens and join codes go; their projects stay, for admins."""
        with self._db(write=True) as db:
            if db.execute(delete(users).where(_named(name))).rowcount == 0:
                raise _no_user(name)

    def set_password(self, name: str, password: str) -> None:
        """A new password ends the user's sign-in sessions (their API tokens stay until revoked)."""
        password_hash = HASHER.hash(check_password(password))
        with self._db(write=True) as db:
            user_id = db.execute(
                update(users)
                .where(_named(name))
                .values(password_hash=password_hash)
                .returning(users.c.id)
            ).scalar_one_or_none()
            if user_id is None:
                raise _no_user(name)
            db.execute(
                delete(credentials).where(
                    credentials.c.user_id == user_id, credentials.c.kind == CredentialKind.SESSION
                )
            )

    def user_named(self, name: str) -> User:
        with self._db() as db:
            row = db.execute(select(users).where(_named(name))).mappings().first()
        if row is None:
            raise _no_user(name)
        return _user(row)

    def password_hash(self, name: str) -> str | None:
        with self._db() as db:
            found = db.execute(
                select(users.c.password_hash).where(_named(name))
            ).scalar_one_or_none()
        return str(found) if found is not None else None

    def authenticate(self, name: str, password: str) -> User | None:
        """The user when the password is theirs; None otherwise, in about the same time either way."""
        with self._db() as db:
            row = db.execute(select(users).where(_named(name))).mappings().first()
        try:
            HASHER.verify(row["password_hash"] if row else _decoy_hash(), password)
        except (VerificationError, InvalidHashError):
            return None
        return _user(row) if row else None

    # Sessions and tokens

    def start_session(self, user: User, lifetime_s: float) -> str:
        """A new sign-in session's secret (the cookie's value); expired sessions are cleared."""
        secret = secrets.token_urlsafe(32)
        now = time.time()
        with self._db(write=True) as db:
            db.execute(delete(credentials).where(credentials.c.expires_at < now))
            self._insert_credential(
                db, user, CredentialKind.SESSION, secret, None, now + lifetime_s
            )
        return secret

    def end_session(self, secret: str) -> None:
        with self._db(write=True) as db:
            db.execute(
                delete(credentials).where(
                    credentials.c.digest == digest(secret),
                    credentials.c.kind == CredentialKind.SESSION,
                )
            )

    def create_token(self, user: User, name: str | None) -> tuple[Token, str]:
        """A new API token, and its secret: shown once, as only its hash is kept."""
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self._db(write=True) as db:
            token = self._insert_credential(db, user, CredentialKind.TOKEN, secret, name, None)
        return token, secret

    def _insert_credential(
        self,
        db: Connection,
        user: User,
        kind: CredentialKind,
        secret: str,
        name: str | None,
        expires_at: float | None,
    ) -> Token:
        token = Token(id=new_id(), name=name, created_at=time.time())
        db.execute(
            insert(credentials).values(
                id=token.id,
                user_id=user.id,
                kind=kind,
                digest=digest(secret),
                name=name,
                created_at=token.created_at,
                expires_at=expires_at,
            )
        )
        return token

    def list_tokens(self, user: User) -> list[Token]:
        with self._db() as db:
            rows = db.execute(
                select(credentials.c.id, credentials.c.name, credentials.c.created_at)
                .where(credentials.c.user_id == user.id, credentials.c.kind == CredentialKind.TOKEN)
                .order_by(*insertion_order(credentials))
            ).mappings()
            return [Token(**row) for row in rows]

    def revoke_token(self, user: User, token_id: str) -> None:
        with self._db(write=True) as db:
            cursor = db.execute(
                delete(credentials).where(
                    credentials.c.id == token_id,
                    credentials.c.user_id == user.id,
                    credentials.c.kind == CredentialKind.TOKEN,
                )
            )
        if cursor.rowcount == 0:
            raise NotFound("You have no token with this id. List yours with GET /api/tokens.")

    def user_for(self, secret: str, kind: CredentialKind) -> User | None:
        """Whose session or token this secret is, unless it expired or was ended."""
        values = {"digest": digest(secret), "kind": kind, "now": time.time()}
        with self._db() as db:
            row = db.execute(USER_FOR_SECRET, values).mappings().first()
        return _user(row) if row else None

    # Join codes

    def create_join_code(self, user: User, hours: float) -> tuple[JoinCode, str]:
        """A code that lets students make their own accounts for `hours`, and the code itself."""
        code = "".join(secrets.choice(JOIN_ALPHABET) for _ in range(JOIN_LENGTH))
        now = time.time()
        join_code = JoinCode(
            id=new_id(), created_by=user.name, created_at=now, expires_at=now + hours * 3600, uses=0
        )
        with self._db(write=True) as db:
            db.execute(
                insert(join_codes).values(
                    id=join_code.id,
                    digest=digest(code),
                    created_by=user.id,
                    created_at=now,
                    expires_at=join_code.expires_at,
                )
            )
        return join_code, f"{code[:4]}-{code[4:]}"

    def list_join_codes(self) -> list[JoinCode]:
        """The codes still open, oldest first."""
        with self._db() as db:
            rows = db.execute(
                select(
                    join_codes.c.id,
                    users.c.name.label("created_by"),
                    join_codes.c.created_at,
                    join_codes.c.expires_at,
                    join_codes.c.uses,
                )
                .join(users, users.c.id == join_codes.c.created_by)
                .where(join_codes.c.expires_at > time.time())
                .order_by(*insertion_order(join_codes))
            ).mappings()
            return [JoinCode(**row) for row in rows]

    def end_join_code(self, code_id: str) -> None:
        with self._db(write=True) as db:
            if db.execute(delete(join_codes).where(join_codes.c.id == code_id)).rowcount == 0:
                raise NotFound(
                    "There is no open join code with this id. List them with GET /api/join-codes."
                )

    def join(self, code: str, name: str, password: str) -> User:
        """A student's own account, made with an open join code; never an admin."""
        user = User(id=new_id(), name=check_username(name), admin=False, created_at=time.time())
        password_hash = HASHER.hash(check_password(password))
        with self._db(write=True) as db:
            cursor = db.execute(
                update(join_codes)
                .where(
                    join_codes.c.digest == digest(normal_join_code(code)),
                    join_codes.c.expires_at > user.created_at,
                )
                .values(uses=join_codes.c.uses + 1)
            )
            if cursor.rowcount == 0:
                raise Unauthorized(
                    "This join code is not valid (mistyped, ended or expired). Ask your teacher for the current one."
                )
            self._insert_user(db, user, password_hash)
        return user


@dataclass(frozen=True)
class Caller:
    """Who a request comes from: a signed-in user, or anyone at all on a server without accounts."""

    user: User | None

    @property
    def sees_all(self) -> bool:
        return self.user is None or self.user.admin

    @property
    def user_id(self) -> str | None:
        return self.user.id if self.user else None

    def may_see(self, owner_id: str | None) -> bool:
        """Admins (and everyone, without accounts) see every project; a user their own."""
        return self.sees_all or (self.user is not None and owner_id == self.user.id)


ANYONE = Caller(None)
