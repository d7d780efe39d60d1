"""Slows down password guessing: a delay that doubles with each failed sign-in.

One throttle serves the whole dashboard process (every browser tab and
session), so opening new tabs or websockets does not reset it. It counts
failures per client address and overall: a client is delayed after its first
few failures, and all clients together after many (someone guessing from many
addresses). While a delay runs, no password is checked, not even the right
one: otherwise the delay would not slow a guesser down. No Streamlit here, so
it is tested on its own.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

# Failures one client may make before it must wait: typing mistakes are free.
CLIENT_FREE_FAILURES = 3
# Then it waits 1, 2, 4, ... s before its next try, at most 5 minutes.
CLIENT_FIRST_DELAY_S = 1.0
CLIENT_MAX_DELAY_S = 300.0
# All clients together, in the last FORGET_AFTER_S: more than a team mistypes.
OVERALL_FREE_FAILURES = 20
# At most a minute: a guesser must not lock the team out for long.
OVERALL_MAX_DELAY_S = 60.0
# A client's failures (and each failure in the overall count) are forgotten
# this long after they happened.
FORGET_AFTER_S = 900.0


def doubling_delay(failures: int, free: int, first_s: float, max_s: float) -> float:
    """0 for the first ``free`` failures, then first_s, 2 first_s, 4 first_s, ... up to max_s."""
    if failures <= free:
        return 0.0
    return min(max_s, first_s * 2.0 ** min(failures - free - 1, 64))


@dataclass
class _ClientRecord:
    failures: int = 0
    last_failure: float = 0.0


@dataclass(frozen=True)
class Verdict:
    """What one failure cost: the wait before the next try, and the counts behind it."""

    wait_s: float
    client_failures: int
    overall_failures: int


class SignInThrottle:
    """Failure counts per client and overall; thread-safe (each session is a thread)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._clients: dict[str, _ClientRecord] = {}
        self._overall: deque[float] = deque()  # times of the recent failures
        self._client_until: dict[str, float] = {}
        self._overall_until = 0.0

    def wait_s(self, client: str) -> float:
        """Seconds before ``client`` may try a password again (0: now)."""
        with self._lock:
            now = self._clock()
            return max(0.0, self._client_until.get(client, 0.0) - now, self._overall_until - now)

    def record_failure(self, client: str) -> Verdict:
        """Counts a wrong password from ``client``; returns the wait it now faces."""
        with self._lock:
            now = self._clock()
            self._forget(now)
            record = self._clients.setdefault(client, _ClientRecord())
            record.failures += 1
            record.last_failure = now
            self._overall.append(now)
            client_delay = doubling_delay(record.failures, CLIENT_FREE_FAILURES,
                                          CLIENT_FIRST_DELAY_S, CLIENT_MAX_DELAY_S)
            overall_delay = doubling_delay(len(self._overall), OVERALL_FREE_FAILURES,
                                           CLIENT_FIRST_DELAY_S, OVERALL_MAX_DELAY_S)
            self._client_until[client] = now + client_delay
            self._overall_until = max(self._overall_until, now + overall_delay)
            wait = max(client_delay, self._overall_until - now)
            return Verdict(wait, record.failures, len(self._overall))

    def record_success(self, client: str) -> None:
        """The right password: the client's own failures are forgotten (not the overall ones)."""
        with self._lock:
            self._clients.pop(client, None)
            self._client_until.pop(client, None)

    def _forget(self, now: float) -> None:
        horizon = now - FORGET_AFTER_S
        while self._overall and self._overall[0] < horizon:
            self._overall.popleft()
        for client in [c for c, r in self._clients.items() if r.last_failure < horizon]:
            del self._clients[client]
            self._client_until.pop(client, None)
