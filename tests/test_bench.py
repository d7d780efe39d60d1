"""botrix bench's raw baselines do what the toolkit does, so that their ratios mean something.

A baseline that left out an event or a key would flatter it; these tests run
each baseline and the toolkit operation it is compared with on the same jobs,
and compare the events published and the keys left behind.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from botrix_toolkit.bench.queue import Comparison, QueueBenchmark
from botrix_toolkit.core.keys import QueueKeys
from botrix_toolkit.core.queue import QueueService
from tests.conftest import delete_keys_with_prefix

SENTINEL = b"--end of test--"


@pytest.fixture
def bench(redis_url: str, key_prefix: str) -> Iterator[QueueBenchmark]:
    client = redis.Redis.from_url(redis_url)
    try:
        yield QueueBenchmark(client, jobs=3, bulk_jobs=5)
    finally:
        client.close()
        delete_keys_with_prefix(redis_url, key_prefix)


def published_during(client: redis.Redis, keys: QueueKeys, work: Callable[[], None]) -> list[dict[str, Any]]:
    """The events ``work`` publishes, timestamps dropped (they differ by the second)."""
    pubsub = client.pubsub()
    pubsub.subscribe(keys.updates)
    assert pubsub.get_message(timeout=10)["type"] == "subscribe"
    work()
    client.publish(keys.updates, SENTINEL)
    events = []
    deadline = time.monotonic() + 20  # a guard against hanging, not a speed check
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=1)
        if message is None or message["type"] != "message":
            continue
        if message["data"] == SENTINEL:
            pubsub.close()
            return events
        event = json.loads(message["data"])
        assert isinstance(event.pop("timestamp"), int)
        events.append(event)
    raise AssertionError("the sentinel message never arrived")


def key_state(client: redis.Redis, keys: QueueKeys, job_ids: list[str]) -> dict[str, Any]:
    """What a queue holds for these jobs, with TTLs reduced to 'has one'."""
    return {
        "queue": client.zrange(keys.queue, 0, -1, withscores=True),
        "sequence": client.get(keys.sequence),
        "processing": sorted(client.smembers(keys.processing)),
        "leases": client.zrange(keys.leases, 0, -1),
        "statuses": [client.get(keys.status(job_id)) for job_id in job_ids],
        "status ttls set": [client.ttl(keys.status(job_id)) > 0 for job_id in job_ids],
        "data ttls set": [client.ttl(keys.data(job_id)) > 0 for job_id in job_ids],
    }


def test_the_raw_cycle_publishes_and_leaves_what_dequeue_and_complete_do(
    bench: QueueBenchmark, key_prefix: str
) -> None:
    client = bench.client
    job_ids = ["job-a", "job-b", "job-c"]
    outcomes = []
    for name, cycle in (("raw", bench.raw_cycle), ("toolkit", bench.toolkit_cycle)):
        keys = QueueKeys(f"{key_prefix}:{name}")
        QueueService(client, prefix=keys.prefix).add_jobs(
            {"id": job_id, "priority": 2 - position} for position, job_id in enumerate(job_ids)
        )
        events = published_during(client, keys, lambda cycle=cycle, keys=keys: cycle(keys))
        outcomes.append((events, key_state(client, keys, job_ids)))
    (raw_events, raw_keys), (toolkit_events, toolkit_keys) = outcomes
    assert raw_events == toolkit_events
    assert [event["event"] for event in raw_events] == ["status_updated", "status_updated", "job_completed"] * 3
    assert raw_keys == toolkit_keys
    assert raw_keys["statuses"] == [b"completed"] * 3 and raw_keys["processing"] == []


def test_the_raw_single_add_publishes_and_leaves_what_add_job_does(
    bench: QueueBenchmark, key_prefix: str
) -> None:
    client = bench.client
    outcomes = []
    for name, add in (("raw", bench.raw_evalsha_add), ("toolkit", bench.toolkit_add)):
        keys = QueueKeys(f"{key_prefix}:{name}")
        events = published_during(client, keys, lambda add=add, keys=keys: add(keys))
        job_ids = [event["job_id"] for event in events if event["event"] == "job_added"]
        data = [json.loads(client.get(keys.data(job_id))) for job_id in job_ids]
        # the jobs are made fresh for each run: ids and times differ, nothing else
        shapes = [{**job, "id": "x", "created_at": "t", "updated_at": "t"} for job in data]
        for event in events:
            event["job_id"] = event["data"]["job_id"] = "x"
        # the ids differ, so the queue is compared by its scores alone
        scores = [score for _, score in client.zrange(keys.queue, 0, -1, withscores=True)]
        outcomes.append((events, shapes, key_state(client, keys, job_ids) | {"queue": scores}))
    assert outcomes[0] == outcomes[1]
    assert len(outcomes[0][0]) == 2 * bench.jobs


def test_a_run_reports_every_comparison_and_leaves_no_key(bench: QueueBenchmark) -> None:
    comparisons = bench.run(rounds=1)
    assert [c.name for c in comparisons] == [
        "add_job", "add_job", "add_jobs", "dequeue+complete", "dequeue_jobs(100)+complete_jobs",
    ]
    assert all(c.toolkit_rate > 0 and c.baseline_rate > 0 for c in comparisons)
    assert list(bench.client.scan_iter(match="botrix:bench:*")) == []


def test_a_comparison_is_the_median_of_each_rounds_own_ratio() -> None:
    # Round 2 ran on a slow machine: both figures halved, its ratio did not move.
    found = Comparison.of_rounds("op", [90.0, 45.0, 60.0], "raw", [100.0, 50.0, 100.0], 0.8)
    assert found.round_ratios == (0.9, 0.9, 0.6)
    assert found.ratio == 0.9 and found.meets_target
    assert (found.toolkit_rate, found.baseline_rate) == (60.0, 100.0)


def test_lean_frame_baseline_reads_the_rows_and_times_pending_jobs_frame_reads(queue: QueueService) -> None:
    from botrix_toolkit.bench.frames import raw_pending_frame

    queue.add_jobs([{"id": f"f{i}", "priority": i % 3, "count": i, "password": "pw"} for i in range(30)])
    queue.redis.set(queue.keys.status("f4"), "completed")
    queue.redis.delete(queue.keys.data("f5"))
    raw = raw_pending_frame(queue.redis, queue.keys.prefix)
    frame = queue.pending_jobs_frame()
    assert list(raw["id"]) == list(frame["id"]) and len(raw) == 28
    assert list(raw["count"]) == list(frame["count"])
    assert raw["created_at"].tolist() == frame["created_at"].tolist()
