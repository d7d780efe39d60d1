"""How long a client waits for a server that refused or dropped its connection.

redis-py retries in two places, and where differs between its versions: up to
5.x the socket connect retried inside every retried command (so four retries
waited about 9 s), from 6.x the pool's connect runs outside the command's
retries (the same four retries wait 1.5 s). A count of retries therefore
promises nothing; this policy counts time. Every ``call_with_retry`` retries
until ``RECONNECT_WINDOW_S`` has passed since it began, so however redis-py
nests its calls, a server that is back within the window is found, and one
that stays down fails the call after about the window (a nested call that used
up the window leaves none to the call around it).

Never retried: a timeout (a server that stops answering fails within
``socket_timeout``), and what retrying cannot mend: a refused login, an
untrusted certificate (``is_permanent``).
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from redis.backoff import AbstractBackoff, ExponentialBackoff
from redis.retry import Retry

T = TypeVar("T")

# A server restart that replays its append-only file takes seconds: wait this long for it.
RECONNECT_WINDOW_S = 9.0
# Waits between attempts: 0.1, 0.2, 0.4, 0.8, then 1 s until the window ends.
BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 1.0


def is_permanent(error: BaseException) -> bool:
    """True for a connection error that the same attempt would meet again.

    A refused login (wrong password, no password, user disabled) and a
    certificate the client does not trust; a refused connection or a dropped
    one may mend when the server is back.
    """
    if isinstance(error, redis.exceptions.AuthenticationError):
        return True
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


class ReconnectRetry(Retry):
    """redis-py's Retry, bounded by time since the call began rather than by a count."""

    def __init__(
        self,
        window_s: float = RECONNECT_WINDOW_S,
        backoff: AbstractBackoff | None = None,
    ) -> None:
        backoff = backoff or ExponentialBackoff(cap=BACKOFF_CAP_S, base=BACKOFF_BASE_S)
        # The count redis-py reads for its metrics: attempts that fit in the window.
        attempts = max(1, int(window_s / BACKOFF_CAP_S) + 4)
        super().__init__(backoff, attempts, supported_errors=(redis.exceptions.ConnectionError,))
        self.window_s = window_s

    def __eq__(self, other: Any) -> bool:
        return (isinstance(other, ReconnectRetry) and other.window_s == self.window_s
                and super().__eq__(other))

    __hash__ = Retry.__hash__

    def call_with_retry(
        self,
        do: Callable[[], T],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        """``do()``, retried on a connection error until the window has passed.

        ``fail(error)`` (or ``fail(error, failures)``) runs after each failure,
        as redis-py expects: it disconnects the broken connection.
        """
        self._backoff.reset()
        deadline = time.monotonic() + self.window_s
        failures = 0
        while True:
            try:
                return do()
            except self._supported_errors as error:
                if is_permanent(error) or (is_retryable is not None and not is_retryable(error)):
                    raise
                failures += 1
                if with_failure_count:
                    fail(error, failures)
                else:
                    fail(error)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                # The last wait is cut short so one more attempt lands at the deadline.
                time.sleep(min(self._backoff.compute(failures), left))
