"""queries.py against a real server: chunked reads in dequeue order, exact counts, held jobs; no writes."""

from __future__ import annotations

import redis

from botrix_toolkit.core import queries
from botrix_toolkit.core.queue import QueueService
from botrix_toolkit.core.scripting import Scripts


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


def test_queue_gauges_count_levels_held_stalled_and_still_queued_candidates_writing_nothing(
    queue: QueueService, redis_client: redis.Redis, key_prefix: str
) -> None:
    queue.add_jobs([{"id": "h1", "priority": 2}, {"id": "n1", "priority": 1}, {"id": "l1", "priority": 0},
                    {"id": "l2", "priority": 0}])
    queue.dequeue_jobs(2)  # h1, n1 held
    now_ms = queue.queue_gauges(30).server_time_ms
    # h1's lease was last renewed a minute ago; a lease left behind by a job no longer held is not a held job.
    redis_client.zadd(queue.keys.leases, {"h1": now_ms - 60_000, "finished-by-go": now_ms - 60_000})
    before = snapshot(redis_client, key_prefix)

    gauges = queries.queue_gauges(redis_client, queue.keys, Scripts(redis_client), 30_000, ["l1", "n1", "nope"])

    assert gauges.pending == {"high": 0, "normal": 0, "low": 2}
    assert gauges.processing == 2 and gauges.stalled == 1
    assert gauges.still_queued == [True, False, False]
    assert abs(gauges.server_time_ms - now_ms) < 60_000
    assert snapshot(redis_client, key_prefix) == before


def test_pending_since_ages_each_job_by_its_status_keys_time_to_live(
    queue: QueueService, redis_client: redis.Redis
) -> None:
    queue.add_jobs({"id": f"j{i}", "priority": 1} for i in range(3))
    redis_client.pexpire(queue.keys.status("j0"), (queue.ttl - 50) * 1000)  # queued 50 s earlier
    redis_client.persist(queue.keys.status("j2"))  # no expiry: when it was queued cannot be told

    chunks = list(queries.iter_pending_since(redis_client, queue.keys, queue.ttl, chunk=2))

    assert [chunk.ids for chunk in chunks] == [["j0", "j1"], ["j2"]]
    since = dict(zip(["j0", "j1", "j2"], [ms for chunk in chunks for ms in chunk.since_ms]))
    assert since["j2"] is None
    assert since["j0"] is not None and since["j1"] is not None
    assert 49_000 <= since["j1"] - since["j0"] <= 51_000 + 60_000
    assert [p for chunk in chunks for p in chunk.priorities] == [1, 1, 1]
