"""Reads kept in flight (read_ahead.py) under iter_queue_entries, against a real server.

The queue read sends each round trip before reading the last one's reply:
these tests pin that every chunk still comes once and in order at every
length and limit, that a dropped connection is reconnected without losing
or repeating a chunk, and that a read left early or failed leaves no reply
behind for the next caller of the pool.
"""

from __future__ import annotations

import pytest
import redis

from botrix_toolkit.core import queries
from botrix_toolkit.core.packed_calls import PackedCalls
from botrix_toolkit.core.queue import QueueService
from tests.connections import kill_clients_on_this_database


def test_every_job_comes_once_in_order_at_every_length_limit_and_chunk(
    queue: QueueService, redis_client: redis.Redis
) -> None:
    queue.add_jobs({"id": f"j{i:02d}", "priority": i % 3} for i in range(11))
    in_order = [member.decode() for member in redis_client.zrange(queue.keys.queue, 0, -1)]  # type: ignore[union-attr]
    for chunk in (1, 2, 3, 5, 11, 12):
        for limit in (None, 1, 2, 5, 6, 10, 11, 12):
            chunks = list(queries.iter_queue_entries(redis_client, queue.keys, limit, chunk, with_scores=False))
            wanted = in_order if limit is None else in_order[:limit]
            assert [job_id for entries in chunks for job_id in entries.ids] == wanted, (chunk, limit)
            assert [entries.first_rank for entries in chunks] == list(range(0, len(wanted), chunk))
            assert all(entries.raw_scores == [] and len(entries.data) == len(entries.raw_ids) for entries in chunks)
    scored = list(queries.iter_queue_entries(redis_client, queue.keys, chunk=8))
    assert [p for entries in scored for p in entries.priorities] == [2] * 3 + [1] * 4 + [0] * 4


def test_a_connection_dropped_mid_read_is_reconnected_and_no_chunk_is_lost_or_repeated(
    queue: QueueService, redis_url: str
) -> None:
    # Chunks of 8 MB: more than the sockets hold, so the kill cuts replies
    # still on the server's side and the requests in flight must be sent again.
    queue.add_jobs({"id": f"k{i:02d}", "username": "u" * 1_000_000} for i in range(40))
    reading = queries.iter_queue_entries(queue.redis, queue.keys, chunk=8)  # the toolkit's reconnecting client
    seen = list(next(reading).ids)  # two more round trips are now in flight
    killer = redis.Redis.from_url(redis_url)
    try:
        assert kill_clients_on_this_database(killer) >= 1
    finally:
        killer.close()
    rest = list(reading)
    seen += [job_id for entries in rest for job_id in entries.ids]
    assert seen == [f"k{i:02d}" for i in range(40)]
    assert all(value is not None and len(value) > 1_000_000 for entries in rest for value in entries.data)


def test_a_read_left_early_leaves_no_reply_for_the_next_caller(
    queue: QueueService, redis_client: redis.Redis
) -> None:
    queue.add_jobs({"id": f"e{i:03d}", "username": "x" * 500} for i in range(300))
    calls = PackedCalls(redis_client)
    for _ in range(5):  # parked or pooled, the held connection must come back without replies on their way
        reading = queries.iter_queue_entries(redis_client, queue.keys, chunk=50)
        assert next(reading).ids[0] == "e000"
        reading.close()
        assert calls.call(calls.pack("GET", queue.keys.status("e007"))) == b"pending"
        assert calls.call(calls.pack("ECHO", "next")) == b"next"


def test_an_error_reply_is_raised_and_the_pool_stays_clean(queue: QueueService, redis_client: redis.Redis) -> None:
    redis_client.set(queue.keys.queue, "not a sorted set")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        list(queries.iter_queue_entries(redis_client, queue.keys, chunk=2))
    calls = PackedCalls(redis_client)
    assert calls.call(calls.pack("GET", queue.keys.queue)) == b"not a sorted set"
