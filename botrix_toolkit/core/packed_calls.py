"""Script calls and long reads sent pre-packed on redis-py's own pooled connections.

Made for a worker's hot calls, and used as well by the queue's other script
calls (a batch's thousand arguments are packed in C) and by long reads
(``read_ahead``, on a connection held with ``connection()``).

Claiming one job and finishing one are a round trip each, and at tens of
thousands a second redis-py's ``execute_command`` costs more client time than
the scripts cost the server: argument packing in Python, a closure and a
response-callback lookup per call, and redis-py 8's per-command observability
and HIMPORT bookkeeping. ``PackedCalls`` keeps what matters of it and nothing
else: a connection from the client's pool (so TLS, AUTH, the database,
health checks and reconnects are redis-py's), the connection's retry object
with disconnect-on-failure (the same policy as ``execute_command``), and the
connection's own reply parser (hiredis when installed). Commands are packed
by hiredis in C, or once for good when they never change.

Taking a connection from the pool and giving it back costs more than the
rest of a call (redis-py 8 counts both for its metrics, dispatches a release
event and polls the socket), so between hot calls a few connections stay
parked, taken from the pool and kept for the next call (see ``_Parking``).

Only a plain ``redis.Redis`` whose commands are encoded as UTF-8 qualifies;
a cluster client, a single-connection client or a client-side cache keep the
usual path (``PackedCalls.usable`` is False).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from redis.connection import ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from botrix_toolkit.core.clients import RedisClient
from botrix_toolkit.core.cluster_routing import is_cluster_client

_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
try:  # redis[hiredis] is a dependency; without it, every call keeps the usual path
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - hiredis ships wheels for every supported platform
    _hiredis_pack = None

# The most connections parked out of one pool between hot calls: one per
# thread calling at the same moment, up to this; more go back to the pool.
PARK_LIMIT = 4
# Parking only from pools this large or larger: a parked connection is one
# the rest of the client cannot have, and a small pool must keep every one.
PARK_MIN_POOL_SIZE = 32


class _Parking:
    """Connections of one pool kept between hot calls, shared by every ``PackedCalls`` on it.

    Correct as the pool itself is: one connection per caller at a time
    (``list.pop`` and ``append`` under a lock), never a parent's socket in a
    forked child (the pid is checked, as the pool checks it), never a socket
    that raised (it is disconnected first), at most ``PARK_LIMIT`` kept. The
    parked connections stay counted as in use by the pool, so its
    ``disconnect()`` (``Redis.close()``) closes them too; they reconnect when
    used again, as the pool's own do. The parking belongs to the pool, not to
    a ``QueueService``: services made and dropped by the hundred on one
    client (a dashboard's reruns, short-lived threads) share it and leave no
    connection behind. It holds no reference to its pool (each call passes
    it): a client dropped without ``close()`` takes its parked connections
    with it when it is collected, as it takes the pool's own.
    """

    __slots__ = ("idle", "lock", "pid")

    def __init__(self) -> None:
        self.idle: list[Any] = []
        self.lock = threading.Lock()
        self.pid = os.getpid()

    def take(self, pool: ConnectionPool) -> Any:
        """A parked connection, or a fresh one from ``pool``."""
        if self.pid != os.getpid():
            self._forget_parent()
        try:
            conn = self.idle.pop()
        except IndexError:
            return pool.get_connection()
        try:
            # The pool's own check before it hands a connection out: a socket
            # that reads, or that the server closed while it was parked, is
            # dropped, and the send reconnects it.
            if conn.can_read():
                conn.disconnect()
        except (RedisConnectionError, RedisTimeoutError, OSError):
            conn.disconnect()
        return conn

    def give_back(self, pool: ConnectionPool, conn: Any) -> None:
        """Parks ``conn`` for the next call, or returns it to the pool when enough are parked."""
        if conn.should_reconnect():  # the server announced maintenance: as pool.release does
            conn.disconnect()
        with self.lock:
            if len(self.idle) < PARK_LIMIT:
                self.idle.append(conn)
                return
        pool.release(conn)

    def release_all(self, pool: ConnectionPool) -> None:
        """Gives every parked connection back to the pool."""
        with self.lock:
            parked, self.idle = self.idle, []
        if self.pid != os.getpid():
            return  # a forked child's copies of the parent's connections: the pool has forgotten them
        for conn in parked:
            pool.release(conn)

    def _forget_parent(self) -> None:
        # In a forked child: the parked sockets are the parent's. They are
        # dropped unclosed (the pool's reset does the same), and the pool
        # hands this process connections of its own.
        with self.lock:
            if self.pid != os.getpid():
                self.idle = []
                self.pid = os.getpid()


_parkings: weakref.WeakKeyDictionary[ConnectionPool, _Parking] = weakref.WeakKeyDictionary()
_parkings_lock = threading.Lock()


def _parking_for(pool: ConnectionPool) -> _Parking:
    with _parkings_lock:
        parking = _parkings.get(pool)
        if parking is None:
            parking = _parkings[pool] = _Parking()
        return parking


def _may_park(pool: Any) -> bool:
    """Whether connections can be kept out of ``pool`` without starving or stalling anyone.

    Only redis-py's plain pool (a blocking pool would make other callers
    wait for a parked connection; a Sentinel pool moves its connections to a
    new primary), and a large one.
    """
    return type(pool) is ConnectionPool and pool.max_connections >= PARK_MIN_POOL_SIZE


class PackedCalls:
    """Sends packed commands on ``client``'s pool; see the module docstring."""

    def __init__(self, client: RedisClient) -> None:
        pool = getattr(client, "connection_pool", None)
        kwargs = getattr(pool, "connection_kwargs", {})
        self.usable = (
            pool is not None
            and not is_cluster_client(client)
            and getattr(client, "connection", None) is None
            and getattr(pool, "cache", None) is None
            and kwargs.get("encoding", "utf-8").lower().replace("-", "") == "utf8"
            and _hiredis_pack is not None
        )
        self._pool = pool
        self._client = client
        self._parking = _parking_for(pool) if self.usable and pool is not None and _may_park(pool) else None

    @property
    def parks(self) -> bool:
        """Whether connections are parked between calls (see ``_Parking``)."""
        return self._parking is not None

    def pack(self, *args: Any) -> bytes:
        """One command in the wire protocol, packed in C: strings as UTF-8, numbers as their digits."""
        assert _hiredis_pack is not None, "pack() is used only when usable, which needs hiredis"
        return _hiredis_pack(args)

    def call(self, packed: bytes) -> Any:
        """The server's reply to ``packed``, decoded as the client decodes replies.

        Connection errors are retried by the connection's retry policy, the
        connection dropped before each retry, as ``execute_command`` does.
        """
        return self._on_connection(lambda conn: _send_and_read(conn, packed))

    def call_many(self, packed: Sequence[bytes], *, raise_errors: bool = True) -> list[Any]:
        """The replies to ``packed`` commands, sent in one write: a pipeline
        without redis-py's Python work per argument. Every reply is read
        before the first error reply is raised, so the connection goes back
        clean; with ``raise_errors=False`` each error reply stays in its
        place in the list instead. Retried as ``call``: replies lost with
        the connection send the whole batch again, as a redis-py pipeline
        does (at-least-once for writes).
        """
        return self._on_connection(lambda conn: _send_and_read_all(conn, packed, raise_errors))

    def _on_connection(self, work: Callable[[Any], Any]) -> Any:
        # connection()'s rules, without a generator per hot call
        conn = self._take()
        try:
            reply = conn.retry.call_with_retry(lambda: work(conn), lambda _error: conn.disconnect())
        except ResponseError:  # an error reply, read whole: the connection is clean
            self._give_back(conn)
            raise
        except BaseException:
            conn.disconnect()
            self._give_back(conn)
            raise
        self._give_back(conn)
        return reply

    @contextmanager
    def connection(self) -> Iterator[Any]:
        """A connection of the client's pool (a parked one when there is one), held for the block.

        An error reply leaves the connection clean; anything else raised in
        the block (a timeout, an interrupt, a generator closed early) may
        leave a reply on its way, so the connection is dropped before it goes
        back: that socket never answers the next caller.
        """
        conn = self._take()
        try:
            yield conn
        except ResponseError:
            raise
        except BaseException:
            conn.disconnect()
            raise
        finally:
            self._give_back(conn)

    def _take(self) -> Any:
        pool = self._pool
        assert pool is not None, "calls are made only when usable, which needs a pool"
        return self._parking.take(pool) if self._parking is not None else pool.get_connection()

    def _give_back(self, conn: Any) -> None:
        pool = self._pool
        assert pool is not None, "calls are made only when usable, which needs a pool"
        if self._parking is not None:
            self._parking.give_back(pool, conn)
            return
        try:
            if conn.should_reconnect():  # the server announced maintenance: as execute_command does
                conn.disconnect()
                conn.connect()
        finally:
            pool.release(conn)

    def evalsha(self, packed: bytes, source: str) -> Any:
        """``call`` of a packed EVALSHA; a server without the script (``source``) loads it, then runs it."""
        try:
            return self.call(packed)
        except NoScriptError:
            self._client.script_load(source)
            return self.call(packed)

    def close(self) -> None:
        """Gives the parked connections of this client's pool back to it (the client stays usable)."""
        if self._parking is not None and self._pool is not None:
            self._parking.release_all(self._pool)


def _send_and_read(conn: Any, packed: bytes) -> Any:
    conn.send_packed_command((packed,))  # a sequence of buffers, as pack_command gives
    return conn.read_response(disable_decoding=True)  # raw bytes, as the toolkit reads every reply


def _send_and_read_all(conn: Any, packed: Sequence[bytes], raise_errors: bool) -> list[Any]:
    conn.send_packed_command(packed)
    replies: list[Any] = []
    error: ResponseError | None = None
    for _ in packed:
        try:
            replies.append(conn.read_response(disable_decoding=True))
        except ResponseError as exc:  # the replies after it are still to be read
            error = error or exc
            replies.append(exc)
    if error is not None and raise_errors:
        raise error
    return replies


def packed_evalsha(calls: PackedCalls, sha: str, keys: Sequence[Any], args: Sequence[Any]) -> bytes:
    """EVALSHA of a script with its keys and arguments, packed."""
    return calls.pack("EVALSHA", sha, len(keys), *keys, *args)
