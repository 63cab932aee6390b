"""Typed errors: each carries a plain sentence that says what to do, and its kind says what went wrong.

The engine and the service raise these; the web layer alone turns a kind into an HTTP status
(`app.web.errors`), and the CLI prints the sentence.
"""

from __future__ import annotations

import copy
from typing import Self


class TeachboxError(Exception):
    """An error a user can act on. `message` is shown as is, in the CLI and as the API's `detail`."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def reworded(self, message: str) -> Self:
        """The same kind of error with another sentence (to say, for example, which run failed)."""
        clone = copy.copy(self)
        clone.message, clone.args = message, (message,)
        return clone


class InvalidRequest(TeachboxError):
    """The request itself cannot be read: not a zip, a malformed multipart body, a hostile entry."""


class InvalidInput(TeachboxError):
    """Data or parameters that can be read but not used: too few images, an unknown backbone."""


class ImageRejected(InvalidInput):
    """An image that cannot be used; `reason` is the sentence shown next to its filename."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotFound(TeachboxError):
    """What the request names does not exist (any more)."""


class Conflict(TeachboxError):
    """The request clashes with the current state: a job is running, a model is not trained yet."""


class Unauthorized(TeachboxError):
    """The request carries no valid sign-in session or token, on a server with accounts."""


class TooManyRequests(TeachboxError):
    """Too many failed attempts (signing in, joining) in a short time: wait, then try again."""


class Forbidden(TeachboxError):
    """The request may not do this: it came from another site's page, or needs an admin."""


class TooLarge(TeachboxError):
    """More than a limit allows: a file, a request, an archive."""


class UnsupportedMediaType(TeachboxError):
    """The body is not in a format this request accepts."""


class TimedOut(TeachboxError):
    """The client sent too slowly, or stopped sending."""


class Unavailable(TeachboxError):
    """Something needed is missing or busy right now: the pretrained weights, a stopping server."""


class StorageFull(TeachboxError):
    """The disk is full."""


class InternalFailure(TeachboxError):
    """Teachbox itself went wrong (an export that disagrees with PyTorch): a bug to report."""


class TrainingCancelled(Exception):
    """Raised inside the training core when the stop flag is set; never shown to a user."""


def unexpected_failure(what: str, exc: BaseException, log: str = "the server log") -> str:
    """The sentence for an error nobody foresaw: what failed, the exception, and where to look."""
    return f"{what} failed unexpectedly: {exc!r}. Check {log}; try again or report it."


def beside_limit(value: float, limit: float) -> tuple[str, str]:
    """A measured amount and its limit as text: the limit as set, the amount with at least three
    significant digits, and more if needed so that it never reads as equal to the limit."""
    shown_limit = f"{limit:g}"
    digits = max(3, len(str(int(value))))
    shown = f"{value:.{digits}g}"
    while shown == shown_limit and digits < 12:
        digits += 1
        shown = f"{value:.{digits}g}"
    return shown, shown_limit
