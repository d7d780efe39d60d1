"""A worker's hot calls sent pre-packed on redis-py's own pooled connections.

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

Only a plain ``redis.Redis`` whose commands are encoded as UTF-8 qualifies;
a cluster client, a single-connection client or a client-side cache keep the
usual path (``PackedCalls.usable`` is False).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from redis.exceptions import NoScriptError, ResponseError

from botrix_toolkit.core.clients import RedisClient
from botrix_toolkit.core.cluster_routing import is_cluster_client

_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
try:  # redis[hiredis] is a dependency; without it, every call keeps the usual path
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - hiredis ships wheels for every supported platform
    _hiredis_pack = None


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

    def call_many(self, packed: Sequence[bytes]) -> list[Any]:
        """The replies to ``packed`` commands, sent in one write: a pipeline
        without redis-py's Python work per argument, for reads of thousands
        of keys. Every reply is read before the first error reply is raised,
        so the connection goes back clean. Retried as ``call``: use it for
        commands that can safely run twice (reads).
        """
        return self._on_connection(lambda conn: _send_and_read_all(conn, packed))

    def _on_connection(self, work: Callable[[Any], Any]) -> Any:
        pool = self._pool
        assert pool is not None, "calls are made only when usable, which needs a pool"
        conn = pool.get_connection()
        try:
            return conn.retry.call_with_retry(lambda: work(conn), lambda _error: conn.disconnect())
        finally:
            try:
                if conn.should_reconnect():
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


def _send_and_read(conn: Any, packed: bytes) -> Any:
    conn.send_packed_command((packed,))  # a sequence of buffers, as pack_command gives
    return conn.read_response(disable_decoding=True)  # raw bytes, as the toolkit reads every reply


def _send_and_read_all(conn: Any, packed: Sequence[bytes]) -> list[Any]:
    conn.send_packed_command(packed)
    replies: list[Any] = []
    error: ResponseError | None = None
    for _ in packed:
        try:
            replies.append(conn.read_response(disable_decoding=True))
        except ResponseError as exc:  # the replies after it are still to be read
            error = error or exc
            replies.append(exc)
    if error is not None:
        raise error
    return replies


def packed_evalsha(calls: PackedCalls, sha: str, keys: Sequence[Any], args: Sequence[Any]) -> bytes:
    """EVALSHA of a script with its keys and arguments, packed."""
    return calls.pack("EVALSHA", sha, len(keys), *keys, *args)
