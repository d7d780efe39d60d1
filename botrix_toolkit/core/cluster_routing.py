"""Redis Cluster routing: hash-tagged prefixes, cluster clients, a node to subscribe on.

Every operation of a queue is one Lua script over several keys, and a cluster
runs a script only when all its keys live in one slot. A hash tag in the
prefix (``{botrix:jobs}``: only the part in braces is hashed) puts every key
of a queue in one slot, so each script runs on one node; different queues
(``{reports}``, ``{mail}``) spread over the nodes.

Classic pub/sub is broadcast over the cluster bus: a PUBLISH inside a script
on node X reaches subscribers connected to any node, so an event recorder may
listen on any node (``node_client``).
"""

from __future__ import annotations

import logging
from typing import Any, TypeGuard

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.cluster import RedisCluster
from redis.crc import key_slot
from redis.retry import Retry

from botrix_toolkit.core.clients import RedisClient
from botrix_toolkit.core.errors import InvalidInputError

logger = logging.getLogger(__name__)

# A cluster node being replaced or a failover takes a moment: retry a few
# times, but a node that stops answering fails after a few socket timeouts.
CLUSTER_RETRIES = 3


def hash_tag(prefix: str) -> str | None:
    """The hash tag that keys starting with ``prefix`` are hashed on, or None.

    Redis hashes only the part between the first ``{`` and the first ``}``
    after it, when that part is not empty. Keys are ``<prefix>:<name>``, so the
    tag must close inside the prefix for every key of the queue to share it.
    """
    start = prefix.find("{")
    if start < 0:
        return None
    end = prefix.find("}", start + 1)
    if end < 0 or end == start + 1:
        return None
    return prefix[start + 1 : end]


def require_hash_tag(prefix: str) -> str:
    """``prefix`` itself when it carries a hash tag, else an InvalidInputError saying why."""
    if not isinstance(prefix, str) or hash_tag(prefix) is None:
        raise InvalidInputError(
            f"on a Redis Cluster the queue prefix must contain a hash tag, e.g. "
            f"'{{{prefix}}}' instead of {prefix!r}: every operation is one Lua script over "
            f"several keys of the queue, and a cluster runs a script only when all its keys "
            f"hash to one slot; the part in braces is all that is hashed"
        )
    return prefix


def prefix_slot(prefix: str) -> int:
    """The cluster slot of every key of the queue under ``prefix`` (which has a hash tag)."""
    return key_slot(require_hash_tag(prefix).encode())


def is_cluster_client(client: object) -> TypeGuard[RedisCluster]:
    """True for a redis-py ``RedisCluster`` (and its ``ClusterPipeline``)."""
    return isinstance(client, RedisCluster)


def server_is_cluster(url: str, **kwargs: Any) -> bool:
    """True when the server at ``url`` runs in cluster mode (INFO cluster: cluster_enabled:1).

    Any failure to ask (unreachable, timeout, no permission for INFO) counts as
    "not a cluster": the caller's first real command then reports the problem.
    """
    if url.startswith("unix:"):
        return False
    probe_kwargs = {key: value for key, value in kwargs.items()
                    if key not in ("retry", "health_check_interval")}
    probe_kwargs.setdefault("socket_timeout", 5.0)
    probe_kwargs.setdefault("socket_connect_timeout", 5.0)
    probe = redis.Redis.from_url(url, retry=Retry(ExponentialWithJitterBackoff(), 0), **probe_kwargs)
    try:
        return int(probe.info("cluster").get("cluster_enabled", 0)) == 1
    except (redis.RedisError, OSError, ValueError) as exc:
        logger.debug("could not ask whether the server is a cluster: %s", type(exc).__name__)
        return False
    finally:
        probe.close()


def cluster_client(url: str, *, socket_timeout: float = 10.0, **kwargs: Any) -> RedisCluster:
    """A ``RedisCluster`` (bytes responses) from the URL of any of its nodes."""
    kwargs.setdefault("retry", Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0),
                                     CLUSTER_RETRIES))
    kwargs.setdefault("socket_connect_timeout", 5.0)
    return RedisCluster.from_url(url, socket_timeout=socket_timeout, **kwargs)


def node_client(client: RedisClient) -> redis.Redis:
    """A plain ``redis.Redis`` on one node of ``client`` (itself when not a cluster).

    For what needs a single connection with the client's settings (AUTH, TLS,
    timeouts): an ``EventRecorder`` subscribes through it, and cluster pub/sub
    delivers every node's messages there.
    """
    if not isinstance(client, RedisCluster):
        return client
    node = client.get_default_node() or client.get_primaries()[0]
    node_redis: redis.Redis = client.get_redis_connection(node)
    return node_redis
