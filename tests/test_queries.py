"""queries.py against a real server: chunked reads in dequeue order, exact counts, held jobs; no writes."""

from __future__ import annotations

import redis

from botrix_toolkit.core import queries
from botrix_toolkit.core.queue import QueueService


def snapshot(client: redis.Redis, prefix: str) -> dict[bytes, bytes | None]:
    """Every key under ``prefix`` with its serialised value: equal snapshots, nothing written."""
    return {key: client.dump(key) for key in client.scan_iter(match=f"{prefix}*", count=1000)}


def test_queue_entries_come_in_dequeue_order_in_chunks_with_orphans_marked(
    queue: QueueService, redis_client: redis.Redis, key_prefix: str
) -> None:
    queue.add_jobs([{"id": "l1", "priority": 0}, {"id": "h1", "priority": 2}, {"id": "n1", "priority": 1},
                    {"id": "h2", "priority": 2}, {"id": "n2", "priority": 1}])
    redis_client.delete(queue.keys.data("n1"))  # its data expired: an orphan
    before = snapshot(redis_client, key_prefix)

    chunks = list(queries.iter_queue_entries(redis_client, queue.keys, chunk=2))

    assert [chunk.first_rank for chunk in chunks] == [0, 2, 4]
    assert [job_id for chunk in chunks for job_id in chunk.ids] == ["h1", "h2", "n1", "n2", "l1"]
    assert [p for chunk in chunks for p in chunk.priorities] == [2, 2, 1, 1, 0]
    data = {job_id: value for chunk in chunks for job_id, value in zip(chunk.ids, chunk.data, strict=True)}
    assert data["n1"] is None and b'"id":"h1"' in data["h1"]
    assert all(status == b"pending" for chunk in chunks for status in chunk.status)
    assert snapshot(redis_client, key_prefix) == before


def test_a_limit_stops_the_read_where_asked(queue: QueueService, redis_client: redis.Redis) -> None:
    queue.add_jobs({"id": f"j{i}"} for i in range(5))
    chunks = list(queries.iter_queue_entries(redis_client, queue.keys, limit=3, chunk=2))
    assert [chunk.ids for chunk in chunks] == [["j0", "j1"], ["j2"]]
    assert list(queries.iter_queue_entries(redis_client, queue.keys, limit=0)) == []


def test_an_empty_queue_reads_as_nothing(queue: QueueService, redis_client: redis.Redis) -> None:
    assert list(queries.iter_queue_entries(redis_client, queue.keys)) == []
    assert queries.queue_stats(redis_client, queue.keys, ttl=5)["queue_length"] == 0


def test_stats_count_each_pending_job_once_in_its_own_level(
    queue: QueueService, redis_client: redis.Redis
) -> None:
    queue.add_jobs([{"priority": 2}, {"priority": 1}, {"priority": 1}, {"priority": 0}])
    # Priorities the Go service does not refuse: 7 counts as high, -1 as low.
    redis_client.zadd(queue.keys.queue, {"go-seven": -7, "go-minus-one": 1})
    redis_client.sadd(queue.keys.processing, "held")

    stats = queries.queue_stats(redis_client, queue.keys, ttl=123)

    assert stats == {"queue_length": 6, "processing_count": 1, "high_priority": 2, "normal_priority": 2,
                     "low_priority": 2, "ttl_seconds": 123}


def test_held_jobs_carry_their_lease_or_none_when_the_go_service_took_them(
    queue: QueueService, redis_client: redis.Redis, key_prefix: str
) -> None:
    queue.add_job({"id": "mine"})
    assert queue.dequeue_job() is not None
    redis_client.sadd(queue.keys.processing, "taken-by-go")  # Go keeps no lease
    before = snapshot(redis_client, key_prefix)

    held = queries.held_jobs(redis_client, queue.keys)

    seconds, micros = redis_client.time()
    assert held.ids == ["mine", "taken-by-go"]
    assert held.leased_at_ms[1] is None
    assert held.leased_at_ms[0] is not None and held.leased_at_ms[0] <= held.server_time_ms
    assert held.server_time_ms <= seconds * 1000 + micros // 1000
    assert b'"id":"mine"' in held.data[0] and held.data[1] is None
    assert held.status == [b"running", None]
    assert snapshot(redis_client, key_prefix) == before


def test_no_held_jobs_is_empty_lists_with_the_server_time(queue: QueueService, redis_client: redis.Redis) -> None:
    held = queries.held_jobs(redis_client, queue.keys)
    assert (held.ids, held.leased_at_ms, held.data, held.status) == ([], [], [], [])
    assert held.server_time_ms > 0
