"""The clients the toolkit works with, and how it reads their replies: always as bytes.

``QueueService`` takes any client redis-py makes, ``redis.Redis`` or
``redis.cluster.RedisCluster``, with ``decode_responses`` on or off. A
decoding client turns each reply into text with its encoding (strict UTF-8
unless told otherwise), so a job whose data is not valid UTF-8 would raise
inside redis-py while the reply is read: for a claim, after the script had
already moved the job to processing. So every command whose reply the toolkit
reads asks for the reply undecoded (redis-py's ``NEVER_DECODE`` option, which
``Redis``, ``RedisCluster`` and their pipelines honour), and the toolkit
decodes ids and statuses itself: it sees the same bytes whatever the client's
setting. Replies that are numbers or OK are the same either way.

The client's ``encoding`` also encodes what is sent (key names, job JSON):
the Go service reads both as UTF-8, so a client that encodes otherwise is
refused up front rather than allowed to write keys Go cannot find.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from typing import Any, Final, TypeAlias

import redis
from redis.client import NEVER_DECODE, Pipeline
from redis.cluster import ClusterPipeline, RedisCluster

from botrix_toolkit.core.errors import InvalidInputError

# What a QueueService talks to: one server, or a cluster (every key of a
# queue then lives in one slot, see cluster_routing.py).
RedisClient: TypeAlias = redis.Redis | RedisCluster
# Where a command may be queued or sent: a client or a plain pipeline.
CommandTarget: TypeAlias = redis.Redis | RedisCluster | Pipeline

# The option that makes redis-py read one reply undecoded, on any client.
RAW: Final[dict[str, Any]] = {NEVER_DECODE: True}


def require_client(client: object) -> RedisClient:
    """``client`` itself when the toolkit can use it, else an InvalidInputError saying what to pass."""
    if isinstance(client, (Pipeline, ClusterPipeline)):
        raise InvalidInputError(
            "client is a pipeline, which only queues commands: pass the redis.Redis or "
            "RedisCluster it came from (the toolkit makes its own pipelines)"
        )
    if not isinstance(client, (redis.Redis, RedisCluster)):
        raise InvalidInputError(
            f"client must be a redis.Redis or redis.cluster.RedisCluster (a synchronous redis-py "
            f"client), got {type(client).__module__}.{type(client).__qualname__}; "
            f"or give a URL to QueueService.from_url(url)"
        )
    encoding = client.get_encoder().encoding
    if codecs.lookup(encoding).name != "utf-8":
        raise InvalidInputError(
            f"client encodes commands as {encoding!r}, but the Go service reads key names and job JSON "
            f"as UTF-8: make the client with encoding='utf-8' (redis-py's default); "
            f"decode_responses may be on or off"
        )
    return client


def get_raw(client: CommandTarget, key: str) -> bytes | None:
    """GET ``key``: its bytes, or None when it is missing."""
    value: bytes | None = client.execute_command("GET", key, **RAW)
    return value


def mget_raw(client: CommandTarget, keys: Sequence[str | bytes]) -> list[bytes | None]:
    """MGET ``keys`` (not empty): their bytes in order, None where missing."""
    values: list[bytes | None] = client.execute_command("MGET", *keys, **RAW)
    return values


def zrange_raw(client: CommandTarget, key: str, start: int, stop: int) -> list[bytes]:
    """ZRANGE ``key`` ``start`` ``stop``: members by rank, as bytes."""
    members: list[bytes] = client.execute_command("ZRANGE", key, start, stop, **RAW)
    return members


def zrange_with_scores_raw(client: CommandTarget, key: str, start: int, stop: int) -> list[tuple[bytes, float]]:
    """ZRANGE ... WITHSCORES: (member bytes, score) pairs by rank."""
    # withscores and score_cast_func are what redis-py's zrange passes its reply parser.
    pairs: list[tuple[bytes, float]] = client.execute_command(
        "ZRANGE", key, start, stop, "WITHSCORES", withscores=True, score_cast_func=float, **RAW
    )
    return pairs


def smembers_raw(client: CommandTarget, key: str) -> set[bytes]:
    """SMEMBERS ``key``: its members as bytes."""
    members: set[bytes] = client.execute_command("SMEMBERS", key, **RAW)
    return members


def set_raw(client: CommandTarget, key: str, value: bytes, *, ex: int, get: bool = False) -> None:
    """SET ``key`` with a TTL; with ``get``, SET ... GET (refuses a key of another type).

    The reply (with GET the old value, which may be any bytes) is read raw
    and dropped: the write has happened, reading what it returns must not fail.
    """
    if get:
        client.execute_command("SET", key, value, "EX", ex, "GET", get=True, **RAW)
    else:
        client.execute_command("SET", key, value, "EX", ex, **RAW)
