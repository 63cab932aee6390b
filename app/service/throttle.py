"""Failed sign-ins and joins, counted per user name and per client address, in memory.

A name with too many failures in the window waits, whoever tries it (guessing one student's
password); an address with too many waits, whatever names it tries (guessing many). A success
clears the name's count. Counts live in memory: a restart forgets them, which costs an attacker a
restart they cannot cause.
"""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable

from app.engine.errors import TooManyRequests

WINDOW_S = 15 * 60
FAILURES_PER_NAME = 5
FAILURES_PER_ADDRESS = 20


class FailureCounter:
    """The times of recent failures per key; `wait_s` says how long until the key may try again."""

    def __init__(
        self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit, self.window_s, self.clock = limit, window_s, clock
        self._failures: defaultdict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def wait_s(self, key: str) -> float:
        with self._lock:
            self._forget_old(key)
            failures = self._failures.get(key, ())
            if len(failures) < self.limit:
                return 0.0
            return failures[-self.limit] + self.window_s - self.clock()

    def failed(self, key: str) -> None:
        with self._lock:
            self._forget_old(key)
            self._failures[key].append(self.clock())

    def clear(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def _forget_old(self, key: str) -> None:
        failures = self._failures.get(key)
        if failures is None:
            return
        while failures and failures[0] <= self.clock() - self.window_s:
            failures.popleft()
        if not failures:
            del self._failures[key]  # no entry kept for every name ever tried


class SignInThrottle:
    """Refuses attempts (429) for a name or an address that failed too often lately."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.names = FailureCounter(FAILURES_PER_NAME, WINDOW_S, clock)
        self.addresses = FailureCounter(FAILURES_PER_ADDRESS, WINDOW_S, clock)

    def check(self, name: str, address: str) -> None:
        _refuse_for(max(self.names.wait_s(name.lower()), self.addresses.wait_s(address)))

    def check_address(self, address: str) -> None:
        """For joining with a code: only the address counts, so one wrong code blocks nobody else."""
        _refuse_for(self.addresses.wait_s(address))

    def failed(self, name: str, address: str) -> None:
        self.names.failed(name.lower())
        self.addresses.failed(address)

    def failed_address(self, address: str) -> None:
        self.addresses.failed(address)

    def succeeded(self, name: str) -> None:
        self.names.clear(name.lower())


def _refuse_for(wait_s: float) -> None:
    if wait_s > 0:
        minutes = max(1, math.ceil(wait_s / 60))
        raise TooManyRequests(
            f"Too many failed attempts lately, so this one was not checked. Wait {minutes} minute{'s' if minutes > 1 else ''} and try again; an admin can set a new password with `teachbox users passwd NAME`."
        )
