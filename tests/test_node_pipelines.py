"""node_pipelines.py against a real server: one round trip, replies in order, errors raised."""

from __future__ import annotations

import pytest
import redis

from botrix_toolkit.core.keys import QueueKeys
from botrix_toolkit.core.node_pipelines import queue_pipeline, run_on_queue_node


def test_a_single_server_pipeline_is_not_a_transaction(redis_client: redis.Redis, key_prefix: str) -> None:
    pipe = queue_pipeline(redis_client, QueueKeys(key_prefix))
    assert not pipe.transaction  # a MULTI would make the server hold every other client


def test_replies_come_back_in_the_order_of_the_commands(redis_client: redis.Redis, key_prefix: str) -> None:
    keys = QueueKeys(key_prefix)
    redis_client.set(keys.data("a"), "A")
    try:
        replies = run_on_queue_node(redis_client, keys, [
            lambda pipe: pipe.zadd(keys.queue, {"a": -1, "b": 0}),
            lambda pipe: pipe.get(keys.data("a")),
            lambda pipe: pipe.zrange(keys.queue, 0, -1),
            lambda pipe: pipe.mget([keys.data("a"), keys.data("b")]),
        ])
    finally:
        redis_client.delete(keys.queue, keys.data("a"))
    assert replies == [2, b"A", [b"a", b"b"], [b"A", None]]


def test_no_commands_is_no_replies(redis_client: redis.Redis, key_prefix: str) -> None:
    assert run_on_queue_node(redis_client, QueueKeys(key_prefix), []) == []


def test_an_error_reply_is_raised_after_the_other_commands_ran(redis_client: redis.Redis, key_prefix: str) -> None:
    keys = QueueKeys(key_prefix)
    redis_client.set(keys.queue, "not a sorted set")
    try:
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            run_on_queue_node(redis_client, keys, [
                lambda pipe: pipe.set(keys.data("a"), "A"),
                lambda pipe: pipe.zcard(keys.queue),
            ])
        # Not a transaction: the command before the error was applied, as a pipeline does.
        assert redis_client.get(keys.data("a")) == b"A"
    finally:
        redis_client.delete(keys.queue, keys.data("a"))
