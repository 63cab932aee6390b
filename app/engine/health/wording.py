"""Small helpers for the plain sentences of the findings."""

from __future__ import annotations

from collections.abc import Sequence


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else many or word + 's'}"


def join_and(parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def quoted(names: Sequence[str]) -> str:
    return join_and([f"'{n}'" for n in names])


def signed_points(gain: float) -> str:
    """A gain as signed percentage points with one decimal, never '-0.0'."""
    return f"{round(gain * 100, 1) + 0.0:+.1f}"
