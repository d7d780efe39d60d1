"""One round trip to the server that holds a queue, even while a cluster moves it.

On a Redis Cluster every key of a queue is in one slot (its prefix carries a
hash tag), so a queue's batched commands go to the one node that owns the
slot. When the cluster moves that slot to another node (resharding), the
node answers MOVED, ASK or TRYAGAIN to a command and runs nothing of it:
``run_on_queue_node`` then finds where the slot lives now and sends those
commands alone again, so neither a read nor a batch of scripts fails or runs
twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import redis
from redis.client import Pipeline
from redis.cluster import RedisCluster

from botrix_toolkit.core.clients import RedisClient
from botrix_toolkit.core.cluster_routing import is_cluster_client
from botrix_toolkit.core.keys import QueueKeys
from botrix_toolkit.core.scripting import SLOT_MOVING_ERRORS

# How long a batch waits for a moving slot before its error is raised: moving
# a slot of a few thousand jobs takes well under a second.
SLOT_MOVE_WAIT_S = 10.0

# One command queued on a pipeline: ``lambda pipe: pipe.mget(keys)``.
PipelineCommand = Callable[[Pipeline], object]


def queue_pipeline(client: RedisClient, keys: QueueKeys) -> Pipeline:
    """A non-transactional pipeline to the server that holds every key of the queue.

    On a cluster that is the node owning the queue's slot (its prefix has a
    hash tag): redis-py's ClusterPipeline refuses EVALSHA, MGET and TIME, which
    a plain pipeline to that one node runs as usual.
    """
    if is_cluster_client(client):
        node: redis.Redis = client.get_redis_connection(client.get_node_from_key(keys.queue))
        return node.pipeline(transaction=False)
    return client.pipeline(transaction=False)


def run_on_queue_node(client: RedisClient, keys: QueueKeys, commands: Sequence[PipelineCommand]) -> list[Any]:
    """The replies of ``commands``, sent in one round trip to the queue's node.

    Commands that a cluster node redirects (its slot is moving) are sent
    again, alone, to where the slot lives now, for up to SLOT_MOVE_WAIT_S;
    then their error is raised. Any other error is raised at once, as a
    pipeline does.
    """
    replies: list[Any] = [None] * len(commands)
    waiting = list(range(len(commands)))
    deadline, pause = time.monotonic() + SLOT_MOVE_WAIT_S, 0.02
    while True:
        pipe = queue_pipeline(client, keys)
        for index in waiting:
            commands[index](pipe)
        redirected = []
        for index, reply in zip(waiting, pipe.execute(raise_on_error=False)):
            if isinstance(reply, SLOT_MOVING_ERRORS):
                redirected.append((index, reply))
            elif isinstance(reply, Exception):
                raise reply
            else:
                replies[index] = reply
        if not redirected:
            return replies
        if not isinstance(client, RedisCluster) or time.monotonic() > deadline:
            raise redirected[0][1]
        # MOVED: the slot has moved, the map says where. ASK, TRYAGAIN: it is
        # moving; the map changes when the move ends.
        client.nodes_manager.initialize()
        time.sleep(pause)
        pause = min(pause * 2, 0.5)
        waiting = [index for index, _ in redirected]
