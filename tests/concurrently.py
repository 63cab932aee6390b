"""Race helpers: calls released together on their own threads, as racing clients would make them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def at_once(calls: Sequence[Callable[[], T]]) -> list[T | Exception]:
    """Run every call on its own thread, all released by one barrier; each call's result, or the
    exception it raised (so that the test shows which, instead of a thread's traceback), in order."""
    barrier = threading.Barrier(len(calls))
    outcomes: list[T | Exception | None] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            outcomes[i] = calls[i]()
        except Exception as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes  # type: ignore[return-value]  # every slot was filled by its thread


def all_return_at_once(calls: Sequence[Callable[[], T]]) -> list[T]:
    """`at_once`, for calls that must all return: one that raised fails the test, naming it."""
    outcomes = at_once(calls)
    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    return outcomes  # type: ignore[return-value]  # none of them is an exception
