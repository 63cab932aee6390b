"""The one error type of Teachbox: a plain sentence that says what to do, and an HTTP status."""

from __future__ import annotations


class TeachboxError(Exception):
    """An error a user can act on. `message` is shown as is, in the CLI and as the API's `detail`."""

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code

    def __str__(self) -> str:
        return self.message


class ImageRejected(TeachboxError):
    """An image that cannot be used; `reason` is the sentence shown next to its filename."""

    def __init__(self, reason: str, status_code: int = 422) -> None:
        super().__init__(reason, status_code)
        self.reason = reason


class TrainingCancelled(Exception):
    """Raised inside the training core when the stop flag is set; never shown to a user."""
