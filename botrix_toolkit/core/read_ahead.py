"""Round trips of read commands kept in flight: the server answers one while the client reads the last.

A long read (a million-job frame) done one round trip at a time leaves the
server idle while the client parses a reply and the client idle while the
server answers the next: each waits for the other. Sending the next round
trip before reading the last lets both work at once.

``RoundTrips`` is that queue of requests. On a plain client the requests are
packed in C and written at once on one held connection (``PackedCalls``);
replies come back in order. A dropped connection is reconnected by the
connection's retry policy and every request still unanswered is sent again,
which is safe because only reads go through here. On other clients (a
cluster) each request runs as a pipeline on the queue's node when its reply
is asked for, one at a time, as before.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any, Protocol

from redis.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from botrix_toolkit.core.clients import RAW, RedisClient
from botrix_toolkit.core.keys import QueueKeys
from botrix_toolkit.core.node_pipelines import run_on_queue_node
from botrix_toolkit.core.packed_calls import PackedCalls

#: One read command as its arguments, e.g. ``("MGET", key1, key2)``.
Command = tuple[Any, ...]


class RoundTrips(Protocol):
    def send(self, commands: Sequence[Command]) -> None:
        """Queues one round trip of ``commands`` (reads only: it may be sent twice)."""

    def receive(self) -> list[Any]:
        """The raw replies of the oldest round trip not yet received, in command order."""


@contextmanager
def round_trips(client: RedisClient, keys: QueueKeys) -> Iterator[RoundTrips]:
    """Read round trips to the server (or cluster node) holding ``keys``' queue."""
    calls = PackedCalls(client)
    if not calls.usable:
        yield _NodePipelines(client, keys)
        return
    with calls.connection() as conn:
        in_flight = _InFlight(calls, conn)
        try:
            yield in_flight
        finally:
            if in_flight.waiting:
                # left early (an error reply, a consumer that stopped): replies are on their way
                conn.disconnect()


class _InFlight:
    """Requests written ahead on one connection; see the module docstring."""

    def __init__(self, calls: PackedCalls, conn: Any) -> None:
        self._calls = calls
        self._conn = conn
        self._sent: deque[list[bytes]] = deque()
        self._resend = False  # the connection dropped: what is in flight must be written again

    @property
    def waiting(self) -> bool:
        return bool(self._sent)

    def send(self, commands: Sequence[Command]) -> None:
        packed = [self._calls.pack(*command) for command in commands]
        self._sent.append(packed)
        if self._resend:
            return  # written with the others on the next receive
        try:
            self._conn.send_packed_command(packed)
        except (RedisConnectionError, RedisTimeoutError):  # redis-py has dropped the socket
            self._resend = True

    def receive(self) -> list[Any]:
        assert self._sent, "receive() follows a send()"
        replies = self._conn.retry.call_with_retry(self._read_oldest, self._dropped)
        self._sent.popleft()
        errors = [reply for reply in replies if isinstance(reply, ResponseError)]
        if errors:
            raise errors[0]
        return replies

    def _read_oldest(self) -> list[Any]:
        if self._resend:
            self._conn.send_packed_command([command for request in self._sent for command in request])
            self._resend = False
        replies: list[Any] = []
        for _ in self._sent[0]:
            try:
                replies.append(self._conn.read_response(disable_decoding=True))
            except ResponseError as exc:  # the replies after it are still to be read
                replies.append(exc)
        return replies

    def _dropped(self, _error: Exception) -> None:
        self._conn.disconnect()
        self._resend = True


class _NodePipelines:
    """Each request a pipeline on the queue's node, run when its reply is asked for."""

    def __init__(self, client: RedisClient, keys: QueueKeys) -> None:
        self._client = client
        self._keys = keys
        self._queued: deque[Sequence[Command]] = deque()

    def send(self, commands: Sequence[Command]) -> None:
        self._queued.append(commands)

    def receive(self) -> list[Any]:
        commands = self._queued.popleft()
        return run_on_queue_node(self._client, self._keys, [partial(_raw_command, args=args) for args in commands])


def _raw_command(pipe: Pipeline, args: Command) -> None:
    pipe.execute_command(*args, **RAW)
