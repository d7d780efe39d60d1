"""QueueService against a real server: every public operation, its keys and its events.

The Go service's side (jobs taken without a lease, data that expired) is
played with raw redis commands, as docs/wire-format.md describes it.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from botrix_toolkit import (
    BotrixError,
    InvalidInputError,
    Job,
    JobNotFoundError,
    QueueService,
    ServerConnectionError,
    WrongKeyTypeError,
)
from botrix_toolkit.core.reconnect import ReconnectRetry
from tests.event_log import EventLog


def names(messages: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(m["event"], m["job_id"], m["data"].get("status")) for m in messages]


def go_take(queue: QueueService, job_id: str | None = None) -> str:
    """Go's DequeueJob: ZPOPMIN, SADD processing, SET status running; no lease."""
    client, keys = queue.redis, queue.keys
    if job_id is None:
        job_id = client.zpopmin(keys.queue)[0][0].decode()
    else:
        client.zrem(keys.queue, job_id)
    client.sadd(keys.processing, job_id)
    client.set(keys.status(job_id), "running", ex=3600)
    return job_id


def keys_under(queue: QueueService) -> set[str]:
    return {k.decode() for k in queue.redis.scan_iter(match=f"{queue.keys.prefix}:*", count=1000)}


def age_lease(queue: QueueService, job_id: str, seconds: float) -> None:
    """Moves a job's lease ``seconds`` into the past (server clock, ms)."""
    now_s, now_us = queue.redis.time()
    queue.redis.zadd(queue.keys.leases, {job_id: now_s * 1000 + now_us // 1000 - seconds * 1000})


# -- adding -------------------------------------------------------------------
def test_add_job_with_a_job_and_with_a_dict(queue: QueueService) -> None:
    assert queue.add_job(Job(id="as-job", priority=2, count=4, username="u")) == "as-job"
    assert queue.add_job({"id": "as-dict", "priority": "low", "count": 2, "tenant": "acme"}) == "as-dict"
    stored = queue.get_job("as-job")
    assert (stored.priority, stored.count, stored.username, stored.status) == (2, 4, "u", "pending")
    assert stored.created_at is not None and stored.updated_at is not None
    other = queue.get_job("as-dict")
    assert (other.priority, other.count, other.extra) == (0, 2, {"tenant": "acme"})
    assert [queue.get_job_status(i) for i in ("as-job", "as-dict")] == ["pending", "pending"]
    assert queue.get_queue_length() == 2


def test_add_job_makes_an_id_when_missing_and_leaves_the_callers_job_alone(queue: QueueService) -> None:
    mine = Job(priority=1, status="running")
    made = [queue.add_job(mine), queue.add_job({}), queue.add_job({"id": None, "count": 1})]
    assert len(set(made)) == 3 and all(uuid.UUID(i) for i in made)
    assert mine.id == "" and mine.status == "running"
    assert {job.id for job in queue.get_pending_jobs()} == set(made)


@pytest.mark.parametrize(
    "bad",
    [{"id": "x", "priority": 3}, {"id": "x", "priority": "urgent"}, {"id": ""},
     {"id": "x", "count": "many"}, Job(id="x", priority=7), Job(id="x", priority=-1), "not a job"],
)
def test_add_job_rejects_bad_jobs_and_writes_nothing(queue: QueueService, bad: Any) -> None:
    with pytest.raises(InvalidInputError):
        queue.add_job(bad)
    assert keys_under(queue) == set()


def test_add_jobs_adds_2500_jobs_in_order_with_progress(queue: QueueService) -> None:
    calls: list[tuple[int, int]] = []
    jobs = [{"id": f"bulk-{i:05d}", "priority": i % 3} for i in range(2500)]
    ids = queue.add_jobs(jobs, progress=lambda done, total: calls.append((done, total)))
    assert ids == [job["id"] for job in jobs]
    stats = queue.get_queue_stats()
    assert (stats["queue_length"], stats["high_priority"], stats["normal_priority"], stats["low_priority"]) == (
        2500, 833, 833, 834)
    assert calls[-1] == (2500, 2500) and all(total == 2500 for _, total in calls)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    sample = queue.redis.mget([queue.keys.status(i) for i in ids])
    assert set(sample) == {b"pending"}


@pytest.mark.parametrize(("position", "bad"), [(1234, {"priority": "urgent"}), (7, 42), (2499, {"id": ""})])
def test_add_jobs_with_a_bad_job_names_its_position_and_writes_nothing(
    queue: QueueService, events: EventLog, position: int, bad: Any
) -> None:
    jobs: list[Any] = [{"id": f"bulk-{i}"} for i in range(2500)]
    jobs[position] = bad
    with pytest.raises(InvalidInputError, match=f"#{position}\\b"):
        queue.add_jobs(jobs)
    assert keys_under(queue) == set()
    assert events.drain() == []


def test_add_jobs_accepts_a_generator_and_an_empty_iterable(queue: QueueService) -> None:
    assert queue.add_jobs(iter(())) == []
    assert queue.add_jobs({"id": f"g{i}"} for i in range(3)) == ["g0", "g1", "g2"]
    assert queue.get_queue_length() == 3


# -- status -------------------------------------------------------------------
def test_update_job_status_stores_processing_as_running(queue: QueueService) -> None:
    queue.add_job({"id": "s1"})
    queue.update_job_status("s1", "processing")
    assert queue.get_job_status("s1") == "running"
    assert queue.redis.get(queue.keys.status("s1")) == b"running"
    assert 3590 <= queue.redis.ttl(queue.keys.status("s1")) <= 3600


@pytest.mark.parametrize("final", ["completed", "failed", "cancelled"])
def test_update_job_status_to_a_final_status_removes_the_job_like_go(queue: QueueService, final: str) -> None:
    queue.add_jobs([{"id": "held"}, {"id": "queued"}])
    queue.dequeue_job()  # "held" was added first
    assert queue.is_job_processing("held")
    queue.update_job_status("queued", final)
    queue.update_job_status("held", final)
    assert queue.get_queue_length() == 0 and queue.get_processing_count() == 0
    assert [queue.get_job_status(i) for i in ("queued", "held")] == [final, final]


def test_update_job_status_rejects_bad_status_and_keeps_the_old_one(queue: QueueService) -> None:
    queue.add_job({"id": "s1"})
    for bad in ("done", "", None):
        with pytest.raises(InvalidInputError, match="status"):
            queue.update_job_status("s1", bad)
    assert queue.get_job_status("s1") == "pending"


def test_unknown_ids_raise_job_not_found_naming_the_id(queue: QueueService) -> None:
    operations: list[Callable[[], Any]] = [
        lambda: queue.get_job_status("ghost-1"),
        lambda: queue.update_job_status("ghost-1", "running"),
        lambda: queue.complete_job("ghost-1"),
        lambda: queue.cancel_job("ghost-1"),
        lambda: queue.fail_job("ghost-1"),
        lambda: queue.fail_job("ghost-1", requeue=True),
        lambda: queue.get_job("ghost-1"),
        lambda: queue.get_job_result("ghost-1"),
    ]
    for operation in operations:
        with pytest.raises(JobNotFoundError, match="'ghost-1'") as caught:
            operation()
        assert isinstance(caught.value, LookupError)
    assert keys_under(queue) == set(), "an operation on an unknown id must write nothing"


@pytest.mark.parametrize("bad_id", ["", None, 5])
def test_empty_or_non_string_ids_are_invalid_input(queue: QueueService, bad_id: Any) -> None:
    for operation in (queue.get_job_status, queue.complete_job, queue.cancel_job, queue.fail_job,
                      queue.is_job_processing, queue.get_job_result, queue.renew_lease):
        with pytest.raises(InvalidInputError):
            operation(bad_id)


# -- order ----------------------------------------------------------------------
def test_pending_jobs_and_dequeue_follow_priority_then_arrival(queue: QueueService) -> None:
    # Within a level, first in, first out (docs/wire-format.md, "Scores"), not
    # the id order in which a sorted set orders Go's equal scores.
    added = [("n-b", 1), ("l-a", 0), ("h-c", 2), ("n-a", 1), ("h-a", 2), ("l-0", 0), ("Z-n", 1)]
    queue.add_jobs({"id": i, "priority": p} for i, p in added)
    expected = ["h-c", "h-a", "n-b", "n-a", "Z-n", "l-a", "l-0"]
    assert [job.id for job in queue.get_pending_jobs()] == expected
    assert [job.id for job in queue.get_pending_jobs(limit=3)] == expected[:3]
    assert [job.id for job in queue.dequeue_jobs(2)] == expected[:2]
    assert [queue.dequeue_job().id for _ in range(5)] == expected[2:]
    assert queue.dequeue_job() is None


def test_equal_priority_is_first_in_first_out(queue: QueueService) -> None:
    queue.add_job({"id": "zz-added-first"})
    queue.add_job({"id": "aa-added-second"})
    assert queue.dequeue_job().id == "zz-added-first"


def test_get_pending_jobs_keeps_only_pending_status(queue: QueueService) -> None:
    queue.add_jobs([{"id": "p1"}, {"id": "p2"}, {"id": "p3"}])
    queue.update_job_status("p2", "running")  # still in the queue, as Go would leave it
    assert [job.id for job in queue.get_pending_jobs()] == ["p1", "p3"]
    assert all(job.status == "pending" for job in queue.get_pending_jobs())


# -- dequeue, complete, fail, cancel ------------------------------------------------
def test_dequeue_marks_running_holds_and_leases(queue: QueueService) -> None:
    queue.add_job({"id": "d1", "priority": 2, "count": 9})
    job = queue.dequeue_job()
    assert (job.id, job.status, job.count, job.priority) == ("d1", "running", 9, 2)
    assert queue.get_job_status("d1") == "running"
    assert queue.is_job_processing("d1") and queue.get_processing_count() == 1
    assert queue.redis.zscore(queue.keys.leases, "d1") is not None
    assert queue.get_queue_length() == 0


def test_dequeue_drops_a_queued_id_whose_job_already_finished(queue: QueueService, events: EventLog) -> None:
    queue.add_jobs([{"id": "done", "priority": 2}, {"id": "next"}])
    # finished while still queued, as a Go service that crashed mid-CompleteJob leaves it
    queue.redis.set(queue.keys.status("done"), "completed", keepttl=True)
    events.drain()
    assert queue.dequeue_job().id == "next"
    assert queue.get_job_status("done") == "completed"
    assert not queue.is_job_processing("done") and queue.redis.zscore(queue.keys.leases, "done") is None
    assert queue.get_queue_length() == 0 and queue.get_processing_count() == 1
    assert [event["job_id"] for event in events.drain()] == ["next"]  # nothing said of "done"


def test_dequeue_jobs_takes_up_to_n(queue: QueueService) -> None:
    assert queue.dequeue_jobs(5) == []
    queue.add_jobs({"id": f"d{i}"} for i in range(3))
    assert [job.id for job in queue.dequeue_jobs(10)] == ["d0", "d1", "d2"]
    assert queue.get_processing_count() == 3
    for bad in (0, -1, True, 1.5, "2"):
        with pytest.raises(InvalidInputError, match="n must"):
            queue.dequeue_jobs(bad)


def test_complete_job_and_complete_jobs(queue: QueueService) -> None:
    queue.add_jobs({"id": f"c{i}"} for i in range(4))
    queue.dequeue_jobs(4)
    queue.complete_job("c0")
    assert queue.complete_jobs(["c1", "ghost", "c2"]) == ["c1", "c2"]
    assert [queue.get_job_status(f"c{i}") for i in range(4)] == ["completed"] * 3 + ["running"]
    assert queue.get_processing_count() == 1 and queue.is_job_processing("c3")
    assert queue.redis.zrange(queue.keys.leases, 0, -1) == [b"c3"]
    assert queue.complete_jobs([]) == []


def test_complete_jobs_in_more_than_one_batch(queue: QueueService) -> None:
    ids = queue.add_jobs({"id": f"c{i:04d}"} for i in range(1100))
    queue.dequeue_jobs(1100)
    assert queue.complete_jobs(ids) == ids
    assert queue.get_processing_count() == 0
    assert set(queue.redis.mget([queue.keys.status(i) for i in ids])) == {b"completed"}


def test_fail_job_without_requeue(queue: QueueService) -> None:
    queue.add_job({"id": "f1", "priority": 2})
    queue.dequeue_job()
    assert queue.fail_job("f1") is False
    assert queue.get_job_status("f1") == "failed"
    assert not queue.is_job_processing("f1") and queue.get_queue_length() == 0
    assert queue.redis.zscore(queue.keys.leases, "f1") is None


@pytest.mark.parametrize(("priority", "lowered"), [(2, 1), (1, 0), (0, 0)])
def test_fail_job_with_requeue_lowers_priority_not_below_zero(
    queue: QueueService, priority: int, lowered: int
) -> None:
    queue.add_job({"id": "r1", "priority": priority, "count": 3, "tenant": "acme"})
    queue.dequeue_job()
    assert queue.fail_job("r1", requeue=True, error="proxy down") is True
    assert queue.get_job_status("r1") == "pending"
    assert not queue.is_job_processing("r1")
    assert -lowered - 1 < queue.redis.zscore(queue.keys.queue, "r1") < -lowered
    again = queue.dequeue_job()
    assert (again.id, again.priority, again.count, again.extra) == ("r1", lowered, 3, {"tenant": "acme"})


def test_fail_job_with_requeue_uses_the_job_given(queue: QueueService) -> None:
    queue.add_job({"id": "r1", "priority": 2, "progress": 0})
    held = queue.dequeue_job()
    held.progress = 5
    queue.fail_job("r1", requeue=True, job=held)
    stored = queue.get_job("r1")
    assert (stored.progress, stored.priority, stored.status) == (5, 1, "pending")


def test_fail_job_with_requeue_of_a_job_whose_data_expired_fails_it(queue: QueueService) -> None:
    queue.add_job({"id": "r1"})
    queue.dequeue_job()
    queue.redis.delete(queue.keys.data("r1"))
    assert queue.fail_job("r1", requeue=True) is False
    assert queue.get_job_status("r1") == "failed"
    assert queue.get_queue_length() == 0 and queue.get_processing_count() == 0


def test_cancel_job_and_cancel_jobs(queue: QueueService) -> None:
    queue.add_jobs({"id": f"x{i}"} for i in range(4))
    queue.dequeue_job()  # x0 is running
    queue.cancel_job("x0")
    queue.cancel_job("x1")
    assert queue.cancel_jobs(["x2", "nope", "x3"]) == ["x2", "x3"]
    assert [queue.get_job_status(f"x{i}") for i in range(4)] == ["cancelled"] * 4
    assert queue.get_queue_length() == 0 and queue.get_processing_count() == 0
    assert queue.dequeue_job() is None


# -- lengths and stats --------------------------------------------------------------
def test_lengths_and_is_job_processing(queue: QueueService) -> None:
    assert (queue.get_queue_length(), queue.get_processing_count()) == (0, 0)
    queue.add_jobs({"id": f"l{i}"} for i in range(5))
    queue.dequeue_jobs(2)
    assert (queue.get_queue_length(), queue.get_processing_count()) == (3, 2)
    assert queue.is_job_processing("l0") and not queue.is_job_processing("l4")
    assert not queue.is_job_processing("never-added")


def test_queue_stats_count_each_pending_job_once_in_its_level(queue: QueueService) -> None:
    keys, client = queue.keys, queue.redis
    queue.add_jobs([{"id": "h1", "priority": 2}, {"id": "h2", "priority": 2}, {"id": "n1", "priority": 1},
                    {"id": "n2", "priority": 1}, {"id": "l1", "priority": 0}, {"id": "run", "priority": 2}])
    queue.dequeue_job()  # h1
    # Jobs as the Go service stores them (score -priority), with priorities it does not reject.
    for job_id, priority in (("go-7", 7), ("go-2", 2), ("go-1", 1), ("go-minus-3", -3)):
        client.set(keys.data(job_id), json.dumps({"id": job_id, "priority": priority}), ex=3600)
        client.set(keys.status(job_id), "pending", ex=3600)
        client.zadd(keys.queue, {job_id: -priority})
    stats = queue.get_queue_stats()
    assert stats == {"queue_length": 9, "processing_count": 1, "high_priority": 4, "normal_priority": 3,
                     "low_priority": 2, "ttl_seconds": 3600}
    # Go's overlapping ZCOUNTs count its own 2s as normal too and its 1s as low too;
    # the toolkit's scores sit inside their level, so each counts once there too.
    go_counts = (client.zcount(keys.queue, "-inf", -2), client.zcount(keys.queue, -2, -1),
                 client.zcount(keys.queue, -1, "+inf"))
    assert go_counts == (4, 4, 3)
    levels = stats["high_priority"] + stats["normal_priority"] + stats["low_priority"]
    assert sum(go_counts) > stats["queue_length"] == levels


def test_queue_stats_count_queue_entries_until_orphans_are_pruned(queue: QueueService) -> None:
    # Stats cost one round trip whatever the queue's size, so they count queue
    # entries; orphans are never served nor listed as pending, and
    # prune_orphans (the dashboard's button, a worker's routine) makes the
    # counts exact again (defect 3 of docs/wire-format.md).
    queue.add_jobs([{"id": "o1", "priority": 2}, {"id": "o2", "priority": 1}, {"id": "o3", "priority": 0}])
    queue.redis.delete(queue.keys.data("o1"))
    assert queue.get_queue_stats()["queue_length"] == 3
    pending = len(queue.get_pending_jobs())
    assert pending == 2
    assert queue.prune_orphans() == ["o1"]
    stats = queue.get_queue_stats()
    assert stats["high_priority"] + stats["normal_priority"] + stats["low_priority"] == pending
    assert stats["queue_length"] == pending


# -- results --------------------------------------------------------------------------
@pytest.mark.parametrize("result", [{"accounts": ["a", "b"], "ok": True}, [1, 2.5, None], "text ✓", 42, 0.5,
                                    None, False, {"nested": {"deep": [{}]}}])
def test_save_and_get_job_result_any_json_value(queue: QueueService, result: Any) -> None:
    queue.save_job_result("res-1", result)
    text = queue.get_job_result("res-1")
    assert isinstance(text, str) and json.loads(text) == result
    assert 3590 <= queue.redis.ttl(queue.keys.results("res-1")) <= 3600


@pytest.mark.parametrize("result", [object(), {1, 2}, float("nan"), float("inf"), {"k": b"bytes"}])
def test_save_job_result_rejects_what_is_not_json(queue: QueueService, result: Any) -> None:
    with pytest.raises(InvalidInputError, match="'res-1'"):
        queue.save_job_result("res-1", result)
    assert queue.redis.exists(queue.keys.results("res-1")) == 0


# -- clearing --------------------------------------------------------------------------
def test_clear_queue_cancels_every_pending_job_and_publishes(queue: QueueService, events: EventLog) -> None:
    queue.add_jobs({"id": f"q{i}", "priority": i % 3} for i in range(4))
    running = queue.dequeue_job().id
    events.drain()
    assert queue.clear_queue() == 3
    cleared = sorted({"q0", "q1", "q2", "q3"} - {running})
    assert [queue.get_job_status(i) for i in cleared] == ["cancelled"] * 3
    assert queue.get_queue_length() == 0
    assert queue.get_job_status(running) == "running" and queue.is_job_processing(running)
    received = events.drain()
    assert sorted(names(received)) == sorted(
        [("status_updated", i, "cancelled") for i in cleared] + [("job_cancelled", i, "cancelled") for i in cleared])


def test_clear_queue_in_batches_with_progress(queue: QueueService) -> None:
    ids = queue.add_jobs({"id": f"q{i:04d}"} for i in range(1201))
    calls: list[tuple[int, int]] = []
    assert queue.clear_queue(progress=lambda done, total: calls.append((done, total))) == 1201
    assert calls[-1] == (1201, 1201)
    assert set(queue.redis.mget([queue.keys.status(i) for i in ids])) == {b"cancelled"}
    assert queue.clear_queue() == 0


def test_clear_processing_cancels_held_jobs_only(queue: QueueService, events: EventLog) -> None:
    queue.add_jobs({"id": f"p{i}"} for i in range(3))
    queue.dequeue_jobs(2)
    events.drain()
    assert queue.clear_processing() == 2
    assert queue.get_processing_count() == 0
    assert [queue.get_job_status(f"p{i}") for i in range(3)] == ["cancelled", "cancelled", "pending"]
    assert queue.get_queue_length() == 1
    assert sorted(names(events.drain())) == sorted(
        [(e, f"p{i}", "cancelled") for i in range(2) for e in ("status_updated", "job_cancelled")])


# -- connection ----------------------------------------------------------------------------
def test_health_and_repr(queue: QueueService, redis_url: str) -> None:
    assert queue.health() is True
    assert queue.keys.prefix in repr(queue)
    assert queue.url is not None and "127.0.0.1" in queue.url


def test_close_drops_the_connection(redis_url: str, key_prefix: str, redis_client: redis.Redis) -> None:
    name = f"close-{uuid.uuid4().hex[:8]}"

    def connected() -> bool:
        return any(c.get("name") == name for c in redis_client.client_list())

    with QueueService.from_url(redis_url, prefix=key_prefix, client_name=name) as service:
        assert service.health()
        assert connected()
    deadline = time.monotonic() + 10  # the server notices the closed socket a moment later
    while connected() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not connected()


def test_subscribe_listens_on_the_updates_channel(queue: QueueService, events: EventLog) -> None:
    queue.add_job({"id": "sub-1"})
    assert [m["event"] for m in events.drain()] == ["status_updated", "job_added"]
    other = queue.subscribe("some-other-channel")
    try:
        confirmation = other.get_message(timeout=10)
        assert confirmation["channel"] == b"some-other-channel"
    finally:
        other.close()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound on 127.0.0.1 but not listening: every connect is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        yield holder.getsockname()[1]


def test_connection_errors_name_the_url_without_its_password(closed_port: int) -> None:
    # A short reconnect window: what is checked here is the message, the window has its own tests (test_reconnect.py)
    service = QueueService.from_url(f"redis://:hunter2@127.0.0.1:{closed_port}/0", prefix="nowhere",
                                    socket_connect_timeout=2, retry=ReconnectRetry(window_s=0.2))
    try:
        assert service.health() is False
        for operation in (service.get_queue_length, service.dequeue_job, lambda: service.add_job({"id": "a"}),
                          service.get_queue_stats, lambda: service.get_job_status("a")):
            with pytest.raises(ServerConnectionError) as caught:
                operation()
            assert isinstance(caught.value, ConnectionError)
            assert f"127.0.0.1:{closed_port}" in str(caught.value)
            assert "hunter2" not in str(caught.value)
        assert "hunter2" not in repr(service) and "hunter2" not in (service.url or "")
    finally:
        service.close()


def test_bad_ttl_is_invalid_input(redis_client: redis.Redis) -> None:
    for ttl in (0, -5, True, 1.5, "3600"):
        with pytest.raises(InvalidInputError, match="ttl"):
            QueueService(redis_client, prefix="x", ttl=ttl)


# -- wrong key types -----------------------------------------------------------------------
QUEUE_KEY_OPERATIONS: dict[str, Callable[[QueueService], Any]] = {
    "dequeue_job": lambda q: q.dequeue_job(),
    "get_queue_length": lambda q: q.get_queue_length(),
    "get_pending_jobs": lambda q: q.get_pending_jobs(),
    "get_queue_stats": lambda q: q.get_queue_stats(),
    "add_job": lambda q: q.add_job({"id": "a"}),
    "clear_queue": lambda q: q.clear_queue(),
    "recover_stalled": lambda q: q.recover_stalled(0),
    "prune_orphans": lambda q: q.prune_orphans(),
}


@pytest.mark.parametrize("operation", list(QUEUE_KEY_OPERATIONS))
def test_a_queue_key_of_another_type_raises_wrong_key_type_naming_it(queue: QueueService, operation: str) -> None:
    queue.redis.set(queue.keys.queue, "not a sorted set")
    with pytest.raises(WrongKeyTypeError, match=queue.keys.queue) as caught:
        QUEUE_KEY_OPERATIONS[operation](queue)
    assert isinstance(caught.value, TypeError)
    assert queue.redis.get(queue.keys.queue) == b"not a sorted set", "the foreign value must survive"
    assert queue.redis.exists(queue.keys.data("a")) == 0, "add must write nothing"


PROCESSING_KEY_OPERATIONS: dict[str, Callable[[QueueService], Any]] = {
    "dequeue_job": lambda q: q.dequeue_job(),
    "get_processing_count": lambda q: q.get_processing_count(),
    "is_job_processing": lambda q: q.is_job_processing("a"),
    "clear_processing": lambda q: q.clear_processing(),
    "recover_stalled": lambda q: q.recover_stalled(0),
    "get_queue_stats": lambda q: q.get_queue_stats(),
    "complete_job": lambda q: q.complete_job("a"),
}


@pytest.mark.parametrize("operation", list(PROCESSING_KEY_OPERATIONS))
def test_a_processing_key_of_another_type_raises_wrong_key_type_naming_it(
    queue: QueueService, operation: str
) -> None:
    queue.add_job({"id": "a"})
    queue.redis.rpush(queue.keys.processing, "x")
    with pytest.raises(WrongKeyTypeError, match=queue.keys.processing):
        PROCESSING_KEY_OPERATIONS[operation](queue)
    assert queue.get_queue_length() == 1 and queue.get_job_status("a") == "pending"


# -- stalled jobs, leases, orphans, corrupt data ----------------------------------------------
def test_recover_stalled_puts_a_held_job_back(queue: QueueService, events: EventLog) -> None:
    queue.add_job({"id": "st-1", "priority": 2})
    queue.dequeue_job()
    assert queue.recover_stalled(timeout_s=300) == []
    events.drain()
    assert queue.recover_stalled(timeout_s=0) == ["st-1"]
    assert queue.get_job_status("st-1") == "pending" and not queue.is_job_processing("st-1")
    assert -3 < queue.redis.zscore(queue.keys.queue, "st-1") < -2
    assert queue.redis.zscore(queue.keys.leases, "st-1") is None
    received = events.drain()
    assert names(received) == [("job_recovered", "st-1", "pending"), ("status_updated", "st-1", "pending"),
                               ("job_added", "st-1", "pending")]
    assert received[0]["data"]["priority"] == 2 and received[2]["data"]["priority"] == 2
    assert queue.dequeue_job().id == "st-1"


def test_renew_lease_keeps_a_job_from_being_recovered(queue: QueueService) -> None:
    queue.add_jobs([{"id": "alive"}, {"id": "dead"}])
    queue.dequeue_jobs(2)
    age_lease(queue, "alive", 600)
    age_lease(queue, "dead", 600)
    assert queue.renew_lease("alive") is True
    assert queue.recover_stalled(timeout_s=300) == ["dead"]
    assert queue.is_job_processing("alive") and queue.get_job_status("alive") == "running"
    assert queue.renew_lease("dead") is False, "a recovered job is no longer held"
    assert queue.renew_lease("never-held") is False
    assert queue.renew_leases([]) == 0


def test_a_job_taken_go_style_without_lease_is_recovered_on_a_later_call(queue: QueueService) -> None:
    queue.add_job({"id": "go-held", "priority": 1})
    go_take(queue)
    assert queue.redis.zscore(queue.keys.leases, "go-held") is None
    assert queue.recover_stalled(timeout_s=0) == [], "first seen: it gets a lease, not recovered"
    assert queue.redis.zscore(queue.keys.leases, "go-held") is not None
    assert queue.recover_stalled(timeout_s=0) == ["go-held"]
    assert queue.get_job_status("go-held") == "pending"
    assert queue.get_processing_count() == 0


def test_a_stalled_job_whose_data_expired_is_failed_not_requeued(queue: QueueService) -> None:
    queue.add_job({"id": "gone"})
    queue.dequeue_job()
    queue.redis.delete(queue.keys.data("gone"))
    assert queue.recover_stalled(timeout_s=0) == []
    assert queue.get_job_status("gone") == "failed"
    assert queue.get_queue_length() == 0 and queue.get_processing_count() == 0


def test_recover_stalled_rejects_a_bad_timeout(queue: QueueService) -> None:
    for bad in (-1, "10", None, True):
        with pytest.raises(InvalidInputError, match="timeout_s"):
            queue.recover_stalled(bad)


def test_prune_orphans_removes_ids_whose_data_expired(queue: QueueService, events: EventLog) -> None:
    queue.add_jobs({"id": f"o{i}"} for i in range(5))
    queue.redis.delete(queue.keys.data("o1"), queue.keys.data("o3"))
    events.drain()
    assert sorted(queue.prune_orphans(chunk=2)) == ["o1", "o3"]
    assert [job.id for job in queue.get_pending_jobs()] == ["o0", "o2", "o4"]
    assert queue.get_queue_length() == 3
    assert sorted(m["job_id"] for m in events.drain() if m["event"] == "job_orphan_removed") == ["o1", "o3"]
    assert queue.prune_orphans() == []


def test_orphans_are_never_served_nor_listed(queue: QueueService) -> None:
    queue.add_jobs([{"id": "orphan", "priority": 2}, {"id": "real", "priority": 0}])
    queue.redis.delete(queue.keys.data("orphan"))
    assert [job.id for job in queue.get_pending_jobs()] == ["real"]
    assert [job.id for job in queue.dequeue_jobs(2)] == ["real"]
    assert not queue.is_job_processing("orphan")
    assert queue.get_queue_length() == 0
    assert queue.dequeue_job() is None


def _corrupt_not_json(queue: QueueService, job_id: str) -> None:
    queue.redis.set(queue.keys.data(job_id), b"{not json", ex=3600)


def _corrupt_json_array(queue: QueueService, job_id: str) -> None:
    queue.redis.set(queue.keys.data(job_id), b'["a", 1]', ex=3600)


def _corrupt_wrong_field_type(queue: QueueService, job_id: str) -> None:
    queue.redis.set(queue.keys.data(job_id), json.dumps({"id": job_id, "priority": "2"}), ex=3600)


def _corrupt_hash_data(queue: QueueService, job_id: str) -> None:
    queue.redis.delete(queue.keys.data(job_id))
    queue.redis.hset(queue.keys.data(job_id), "id", job_id)


def _corrupt_hash_status(queue: QueueService, job_id: str) -> None:
    queue.redis.delete(queue.keys.status(job_id))
    queue.redis.hset(queue.keys.status(job_id), "status", "pending")


@pytest.mark.parametrize(
    "corrupt",
    [_corrupt_not_json, _corrupt_json_array, _corrupt_wrong_field_type, _corrupt_hash_data, _corrupt_hash_status],
    ids=lambda f: f.__name__.removeprefix("_corrupt_"),
)
def test_corrupt_jobs_never_stop_dequeue(queue: QueueService, events: EventLog, corrupt: Callable) -> None:
    queue.add_jobs([{"id": "bad", "priority": 2}, {"id": "good", "priority": 1}])
    corrupt(queue, "bad")
    assert [job.id for job in queue.get_pending_jobs()] in (["good"], ["bad", "good"])
    events.drain()
    job = queue.dequeue_job()
    assert job is not None and job.id == "good"
    assert queue.get_queue_length() == 0
    assert not queue.is_job_processing("bad") and queue.get_processing_count() == 1
    assert queue.redis.zscore(queue.keys.leases, "bad") is None
    if corrupt is not _corrupt_hash_status:
        assert queue.get_job_status("bad") == "failed"
    else:
        assert queue.redis.type(queue.keys.status("bad")) == b"hash", "a foreign key is left alone"
    received = events.drain()
    assert ("job_failed", "bad", "failed") in names(received)
    assert queue.dequeue_job() is None


def test_get_pending_jobs_skips_corrupt_and_hash_typed_data(queue: QueueService) -> None:
    queue.add_jobs([{"id": "a"}, {"id": "b"}, {"id": "c"}])
    _corrupt_not_json(queue, "a")
    _corrupt_hash_data(queue, "b")
    assert [job.id for job in queue.get_pending_jobs()] == ["c"]


# -- events -------------------------------------------------------------------------------
def _assert_event_shape(message: dict[str, Any], job_id: str) -> None:
    assert set(message) == {"event", "job_id", "timestamp", "data"}
    assert message["job_id"] == job_id == message["data"]["job_id"]
    assert type(message["timestamp"]) is int
    assert abs(message["timestamp"] - time.time()) < 3600, "unix seconds, not ms"
    assert isinstance(message["data"]["status"], str)


def test_events_of_a_completed_job(queue: QueueService, events: EventLog) -> None:
    queue.add_job({"id": "jöb-✓-1", "priority": 2})
    queue.dequeue_job()
    queue.complete_job("jöb-✓-1")
    received = events.drain()
    assert names(received) == [
        ("status_updated", "jöb-✓-1", "pending"), ("job_added", "jöb-✓-1", "pending"),
        ("status_updated", "jöb-✓-1", "running"), ("status_updated", "jöb-✓-1", "completed"),
        ("job_completed", "jöb-✓-1", "completed"),
    ]
    for message in received:
        _assert_event_shape(message, "jöb-✓-1")
        expected_keys = {"job_id", "status", "priority"} if message["event"] == "job_added" else {"job_id", "status"}
        assert set(message["data"]) == expected_keys
    assert received[1]["data"]["priority"] == 2 and type(received[1]["data"]["priority"]) is int


def test_events_of_a_failed_job_with_requeue_have_no_job_failed(queue: QueueService, events: EventLog) -> None:
    queue.add_job({"id": "e1", "priority": 1})
    queue.dequeue_job()
    events.drain()
    queue.fail_job("e1", requeue=True)
    received = events.drain()
    assert names(received) == [("status_updated", "e1", "failed"), ("status_updated", "e1", "pending"),
                               ("job_added", "e1", "pending")]
    assert received[2]["data"]["priority"] == 0
    for message in received:
        _assert_event_shape(message, "e1")


def test_events_of_a_failed_job_without_requeue(queue: QueueService, events: EventLog) -> None:
    queue.add_job({"id": "e1"})
    queue.dequeue_job()
    events.drain()
    queue.fail_job("e1", error="boom")
    received = events.drain()
    assert names(received) == [("status_updated", "e1", "failed"), ("job_failed", "e1", "failed")]
    assert received[1]["data"].get("error") == "boom"
    for message in received:
        _assert_event_shape(message, "e1")


def test_events_of_a_cancelled_job(queue: QueueService, events: EventLog) -> None:
    queue.add_job({"id": "e1"})
    events.drain()
    queue.cancel_job("e1")
    received = events.drain()
    assert names(received) == [("status_updated", "e1", "cancelled"), ("job_cancelled", "e1", "cancelled")]
    for message in received:
        _assert_event_shape(message, "e1")
        assert set(message["data"]) == {"job_id", "status"}


def test_events_of_bulk_add_are_in_job_order(queue: QueueService, events: EventLog) -> None:
    queue.add_jobs([{"id": "b1", "priority": 0}, {"id": "b2", "priority": 2}])
    assert [(m["event"], m["job_id"], m["data"].get("priority")) for m in events.drain()] == [
        ("status_updated", "b1", None), ("job_added", "b1", 0),
        ("status_updated", "b2", None), ("job_added", "b2", 2),
    ]


def test_errors_share_one_root() -> None:
    for error in (InvalidInputError, JobNotFoundError, ServerConnectionError, WrongKeyTypeError):
        assert issubclass(error, BotrixError)


# -- release ----------------------------------------------------------------------------
def test_release_jobs_puts_held_jobs_back_unchanged_with_recovery_events(queue: QueueService) -> None:
    queue.add_jobs([{"id": "rel-a", "priority": 2, "count": 4}, {"id": "rel-b", "priority": 0}])
    held = queue.dequeue_jobs(2)
    assert {job.id for job in held} == {"rel-a", "rel-b"}
    pubsub = queue.subscribe()
    pubsub.get_message(timeout=1)  # the subscribe confirmation
    assert sorted(queue.release_jobs(["rel-a", "rel-b", "not-held"])) == ["rel-a", "rel-b"]
    assert queue.get_processing_count() == 0 and queue.redis.zcard(queue.keys.leases) == 0
    assert [job.id for job in queue.get_pending_jobs()] == ["rel-a", "rel-b"]
    assert queue.get_job("rel-a").priority == 2 and queue.get_job("rel-a").count == 4
    assert queue.get_job_status("rel-a") == "pending"
    events = []
    while (message := pubsub.get_message(timeout=1)) is not None and len(events) < 6:
        if message["type"] == "message":
            events.append(json.loads(message["data"]))
    pubsub.close()
    of_a = [e for e in events if e["job_id"] == "rel-a"]
    assert [e["event"] for e in of_a] == ["job_recovered", "status_updated", "job_added"]
    assert of_a[0]["data"]["reason"] == "released" and of_a[2]["data"]["priority"] == 2
    assert queue.release_jobs(["rel-a"]) == []  # no longer held: nothing to do


def test_a_completion_sent_twice_publishes_one_job_completed(queue: QueueService) -> None:
    queue.add_job({"id": "twice"})
    queue.dequeue_job()
    pubsub = queue.subscribe()
    pubsub.get_message(timeout=1)
    queue.complete_job("twice")
    queue.complete_job("twice")  # a worker retrying after a lost reply: no error, no event
    queue.redis.publish(queue.keys.updates, "sentinel")
    events = []
    while (message := pubsub.get_message(timeout=2)) is not None:
        if message["type"] == "message":
            if message["data"] == b"sentinel":
                break
            events.append(json.loads(message["data"])["event"])
    pubsub.close()
    assert events == ["status_updated", "job_completed"]
    assert queue.get_job_status("twice") == "completed"
