"""Hostile input: any id, job, priority or result through the public API, and garbage in Redis.

Properties (hypothesis): a value is either refused with InvalidInputError and
nothing is written, or stored and read back whole (data, status and queue
entry agree). Garbage in Redis: reads skip and report it, writes refuse with
the key named, dequeue never hands it out and never crashes.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botrix_toolkit import CorruptJobError, InvalidInputError, Job, Priority, QueueService, WrongKeyTypeError
from botrix_toolkit.core.json_depth import MAX_JSON_DEPTH
from botrix_toolkit.server.embedded import EmbeddedServer
from tests.event_log import EventLog

PROPERTY = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

GO_FIELDS = ["id", "created_at", "updated_at", "deleted_at", "count", "username", "password",
             "status", "progress", "successful", "failed", "started_at", "completed_at",
             "error_msg", "test_mode", "priority", "extra"]

# Text that UTF-8 can encode: lone surrogates are tested on their own below.
encodable_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | encodable_text
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(encodable_text, children, max_size=4),
    max_leaves=12,
)
hostile_ids = (
    st.sampled_from(["", "*", ":", "\n", "a:b:c", "{tag}", " ", "\x00", "é€😀", "x" * 100_000,
                     "data:", "../status", "?*[]"])
    | st.text(st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=200)
)


@pytest.fixture(scope="module")
def hq(embedded_server: EmbeddedServer) -> Iterator[QueueService]:
    """One service for the whole module (hypothesis runs many examples per test)."""
    prefix = f"hostile:{uuid4().hex[:10]}"
    service = QueueService.from_url(embedded_server.url, prefix=prefix)
    try:
        yield service
    finally:
        keys = list(service.redis.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            service.redis.unlink(*keys)
        service.close()


def fresh_id() -> str:
    return f"h-{uuid4().hex}"


def nothing_stored(q: QueueService, job_id: str) -> bool:
    keys = q.keys
    return (q.redis.exists(keys.data(job_id), keys.status(job_id)) == 0
            and q.redis.zscore(keys.queue, job_id) is None)


def assert_whole_job(q: QueueService, job_id: str, priority: int) -> Job:
    """data, status and queue entry agree: the job is stored whole."""
    stored = q.get_job(job_id)
    assert stored.id == job_id
    assert stored.priority == priority
    assert q.get_job_status(job_id) == "pending"
    assert -priority - 1 < q.redis.zscore(q.keys.queue, job_id) < -priority, "inside its level"
    return stored


def forget(q: QueueService, job_id: str) -> None:
    keys = q.keys
    q.redis.zrem(keys.queue, job_id)
    q.redis.delete(keys.data(job_id), keys.status(job_id), keys.results(job_id))


# -- properties over the public API --------------------------------------------------

@PROPERTY
@given(job_id=hostile_ids)
def test_any_id_is_refused_cleanly_or_round_trips(hq: QueueService, job_id: str) -> None:
    try:
        returned = hq.add_job({"id": job_id})
    except InvalidInputError as exc:
        assert job_id == "", f"only the empty id is refused, not {job_id!r}: {exc}"
        assert "job id" in str(exc)
        return
    try:
        assert returned == job_id
        assert_whole_job(hq, job_id, Priority.NORMAL)
        hq.cancel_job(job_id)
        assert hq.get_job_status(job_id) == "cancelled"
        assert hq.redis.zscore(hq.keys.queue, job_id) is None
    finally:
        forget(hq, job_id)


@PROPERTY
@given(value=json_values | st.dictionaries(st.sampled_from(GO_FIELDS[:-1]) | encodable_text,
                                           json_values, max_size=6))
def test_any_json_value_as_a_job_is_refused_cleanly_or_stored_whole(hq: QueueService,
                                                                    value: Any) -> None:
    job_id = fresh_id()
    if isinstance(value, dict):
        value = {**value, "id": job_id}
    keys_before = hq.redis.dbsize()
    try:
        returned = hq.add_job(value)
    except InvalidInputError as exc:
        assert str(exc), "the message says what was wrong"
        assert nothing_stored(hq, job_id)
        assert hq.redis.dbsize() == keys_before
        return
    try:
        assert isinstance(value, dict) and returned == job_id
        priority = int(Priority.parse(value.get("priority", 1)))
        stored = assert_whole_job(hq, job_id, priority)
        raw = json.loads(hq.redis.get(hq.keys.data(job_id)))
        for name, item in value.items():
            if name not in GO_FIELDS:
                assert raw[name] == item, f"extra field {name!r} kept as given"
        assert Job.from_wire(stored.to_json()).id == job_id  # Go could decode it
    finally:
        forget(hq, job_id)


@PROPERTY
@given(priority=st.integers() | st.floats() | encodable_text | st.booleans() | st.none()
       | st.sampled_from(["HIGH", " low ", "Normal", "2", "urgent", Priority.HIGH])
       | st.lists(st.integers(), max_size=2))
def test_any_priority_is_refused_cleanly_or_stored_exactly(hq: QueueService, priority: Any) -> None:
    job_id = fresh_id()
    try:
        hq.add_job({"id": job_id, "priority": priority})
    except InvalidInputError as exc:
        assert "priority" in str(exc)
        assert nothing_stored(hq, job_id)
        with pytest.raises(InvalidInputError):
            Priority.parse(priority)
        return
    try:
        assert_whole_job(hq, job_id, int(Priority.parse(priority)))
    finally:
        forget(hq, job_id)


@PROPERTY
@given(result=json_values)
def test_any_json_result_round_trips(hq: QueueService, result: Any) -> None:
    job_id = fresh_id()
    try:
        hq.save_job_result(job_id, result)
        assert json.loads(hq.get_job_result(job_id)) == result
    finally:
        forget(hq, job_id)


@pytest.mark.parametrize("where", ["id", "result"])
def test_a_lone_surrogate_is_refused_as_invalid_input(hq: QueueService, where: str) -> None:
    with pytest.raises(InvalidInputError):
        if where == "id":
            hq.add_job({"id": "bad\ud800id"})
        else:
            hq.save_job_result(fresh_id(), {"text": "bad\ud800"})


@pytest.mark.parametrize("extra", [True, 5, "text", [1, 2]])
def test_a_non_mapping_extra_is_invalid_input(hq: QueueService, extra: Any) -> None:
    job_id = fresh_id()
    with pytest.raises(InvalidInputError):
        hq.add_job({"id": job_id, "extra": extra})
    assert nothing_stored(hq, job_id)


def test_a_rejected_surrogate_id_writes_nothing(hq: QueueService) -> None:
    keys_before = hq.redis.dbsize()
    with pytest.raises(ValueError):
        hq.add_job({"id": "bad\udc80id"})
    assert hq.redis.dbsize() == keys_before


# -- garbage in Redis -------------------------------------------------------------------

def garbage(rng: random.Random, size: int = 64) -> bytes:
    """Bytes that are neither UTF-8 nor JSON (0xff never occurs in UTF-8)."""
    return b"\xff" + bytes(rng.randrange(256) for _ in range(size))


def test_random_bytes_in_data_and_status_keys_are_skipped_never_served(queue: QueueService) -> None:
    rng = random.Random(3)
    groups = {kind: [f"{kind}-{i}" for i in range(5)]
              for kind in ("good", "bad_data", "bad_status", "bad_both")}
    queue.add_jobs({"id": job_id} for ids in groups.values() for job_id in ids)
    for job_id in groups["bad_data"] + groups["bad_both"]:
        queue.redis.set(queue.keys.data(job_id), garbage(rng))
    for job_id in groups["bad_status"] + groups["bad_both"]:
        queue.redis.set(queue.keys.status(job_id), garbage(rng))

    assert sorted(job.id for job in queue.get_pending_jobs()) == groups["good"]
    frame = queue.pending_jobs_frame()
    assert sorted(frame["id"]) == groups["good"]
    assert frame.attrs["corrupt"] == 5 and frame.attrs["not_pending"] == 10
    with pytest.raises(CorruptJobError, match="bad_data-0"):
        queue.get_job("bad_data-0")
    with pytest.raises(CorruptJobError, match=r"status:bad_status-0"):
        queue.get_job_status("bad_status-0")

    served = queue.dequeue_jobs(100)
    # a job whose data is whole is served (its status key is rewritten to running)
    assert sorted(job.id for job in served) == sorted(groups["good"] + groups["bad_status"])
    assert all(job.count == 0 and job.status == "running" for job in served)
    for job_id in groups["bad_data"] + groups["bad_both"]:
        assert queue.get_job_status(job_id) == "failed"
        assert not queue.is_job_processing(job_id)
    assert queue.get_queue_length() == 0
    assert queue.dequeue_jobs(10) == []


# Which queue-level keys each operation touches (each refused with nothing changed).
QUEUE_KEYS = ("queue", "processing", "leases")
OPERATIONS: dict[str, tuple[str, ...]] = {
    "add_job": ("queue",),
    "dequeue_jobs": QUEUE_KEYS,
    "complete_job": QUEUE_KEYS,
    "cancel_job": QUEUE_KEYS,
    "fail_job_requeue": QUEUE_KEYS,
    "recover_stalled": QUEUE_KEYS,
    "renew_lease": ("processing", "leases"),
    "clear_queue": QUEUE_KEYS,
    "get_queue_stats": ("queue", "processing"),
    "pending_jobs_frame": ("queue",),
    "processing_frame": ("processing", "leases"),
    "prune_orphans": ("queue",),
}


def run_operation(q: QueueService, name: str) -> object:
    calls = {
        "add_job": lambda: q.add_job({"id": "new"}),
        "dequeue_jobs": lambda: q.dequeue_jobs(5),
        "complete_job": lambda: q.complete_job("held"),
        "cancel_job": lambda: q.cancel_job("waiting"),
        "fail_job_requeue": lambda: q.fail_job("held", requeue=True),
        "recover_stalled": lambda: q.recover_stalled(0),
        "renew_lease": lambda: q.renew_lease("held"),
        "clear_queue": q.clear_queue,
        "get_queue_stats": q.get_queue_stats,
        "pending_jobs_frame": q.pending_jobs_frame,
        "processing_frame": q.processing_frame,
        "prune_orphans": q.prune_orphans,
    }
    return calls[name]()


def replace_with_wrong_type(client: redis.Redis, key: str, current: str) -> None:
    client.delete(key)
    if current == "zset" or current == "set":
        client.rpush(key, "not", "a", "set")
    else:
        client.hset(key, "not", "a string")


@pytest.mark.parametrize(("operation", "key_name"),
                         [(op, key) for op, keys in OPERATIONS.items() for key in keys])
def test_a_queue_key_of_the_wrong_type_is_refused_naming_it(queue: QueueService, operation: str,
                                                            key_name: str) -> None:
    queue.add_jobs([{"id": "held"}, {"id": "waiting", "priority": 0}])
    assert queue.dequeue_job().id == "held"
    key = getattr(queue.keys, key_name)
    replace_with_wrong_type(queue.redis, key, {"queue": "zset", "processing": "set",
                                               "leases": "zset"}[key_name])
    statuses_before = queue.redis.mget([queue.keys.status("held"), queue.keys.status("waiting")])
    queue_keys_before = queue_key_contents(queue)
    with pytest.raises(WrongKeyTypeError) as error:
        run_operation(queue, operation)
    assert key in str(error.value)
    # refused with nothing changed (some scripts undo a first write that proved a type)
    assert queue.redis.mget([queue.keys.status("held"),
                             queue.keys.status("waiting")]) == statuses_before
    assert queue_key_contents(queue) == queue_keys_before
    assert queue.redis.exists(queue.keys.data("new")) == 0


def key_contents(client: redis.Redis, key: str) -> object:
    """What a key holds, by its type (lease times included); another type as its name."""
    kind = client.type(key).decode()
    if kind == "string":
        return client.get(key)
    if kind == "zset":
        return client.zrange(key, 0, -1, withscores=True)
    if kind == "set":
        return sorted(client.smembers(key))
    return (kind, client.lrange(key, 0, -1)) if kind == "list" else kind


def queue_key_contents(q: QueueService) -> dict[str, object]:
    """Queue, processing and leases as they are."""
    keys = q.keys
    return {name: key_contents(q.redis, key)
            for name, key in (("queue", keys.queue), ("processing", keys.processing), ("leases", keys.leases))}


def test_job_keys_of_the_wrong_type_are_reported_and_set_aside(queue: QueueService) -> None:
    queue.add_jobs([{"id": "hash-data"}, {"id": "list-status"}, {"id": "fine"}])
    keys = queue.keys
    queue.redis.delete(keys.data("hash-data"))
    queue.redis.hset(keys.data("hash-data"), "a", "b")
    queue.redis.delete(keys.status("list-status"))
    queue.redis.rpush(keys.status("list-status"), "x")
    queue.redis.sadd(keys.results("fine"), "x")

    with pytest.raises(WrongKeyTypeError, match="data:hash-data"):
        queue.get_job("hash-data")
    with pytest.raises(WrongKeyTypeError, match="status:list-status"):
        queue.get_job_status("list-status")
    with pytest.raises(WrongKeyTypeError, match="status:list-status"):
        queue.cancel_job("list-status")
    with pytest.raises(WrongKeyTypeError, match="results:fine"):
        queue.get_job_result("fine")
    # reads skip what they cannot read
    assert [job.id for job in queue.get_pending_jobs()] == ["list-status", "fine"]
    # dequeue serves the whole job only and sets the others aside
    assert [job.id for job in queue.dequeue_jobs(10)] == ["fine"]
    assert queue.get_job_status("hash-data") == "failed"
    assert queue.redis.type(keys.status("list-status")) == b"list"  # left for a human
    assert queue.get_queue_length() == 0 and queue.get_processing_count() == 1
    assert queue.redis.zrange(keys.leases, 0, -1) == [b"fine"]


def test_a_held_job_whose_status_key_has_another_type_stays_held(queue: QueueService) -> None:
    queue.add_job({"id": "held"})
    queue.dequeue_job()
    queue.redis.delete(queue.keys.status("held"))
    queue.redis.rpush(queue.keys.status("held"), "x")
    before = queue_key_contents(queue)
    with pytest.raises(WrongKeyTypeError, match="status:held"):
        queue.complete_job("held")
    assert queue_key_contents(queue) == before and queue.is_job_processing("held")


@pytest.mark.parametrize("bad_key", ["data", "status", "queue"])
@pytest.mark.parametrize("job_id", ["added-before", "new"])
def test_adding_a_job_over_a_key_of_another_type_changes_nothing(queue: QueueService, bad_key: str,
                                                                job_id: str) -> None:
    # One job's add proves the key types by its own writes and undoes them on refusal.
    queue.add_job({"id": "added-before", "count": 1})
    keys = queue.keys
    bad = {"data": keys.data(job_id), "status": keys.status(job_id), "queue": keys.queue}[bad_key]
    queue.redis.delete(bad)
    queue.redis.rpush(bad, "not", "a", "string")
    watched = (keys.data(job_id), keys.status(job_id), keys.queue)
    before = [key_contents(queue.redis, key) for key in watched]
    with pytest.raises(WrongKeyTypeError, match=bad):
        queue.add_job({"id": job_id, "count": 2})
    assert [key_contents(queue.redis, key) for key in watched] == before


def test_save_job_result_refuses_a_results_key_of_the_wrong_type(queue: QueueService) -> None:
    queue.redis.sadd(queue.keys.results("r"), "x")
    with pytest.raises(WrongKeyTypeError, match="results:r"):
        queue.save_job_result("r", {"ok": True})


def test_huge_values_round_trip_or_are_set_aside(queue: QueueService) -> None:
    ten_mb = "u" * (10 * 1024 * 1024)
    queue.add_job({"id": "huge", "username": ten_mb, "password": "pw"})
    queue.add_job({"id": "huge-garbage"})
    queue.redis.set(queue.keys.data("huge-garbage"), b"\xff" * (10 * 1024 * 1024))
    frame = queue.pending_jobs_frame()
    assert frame["id"].tolist() == ["huge"] and frame.attrs["corrupt"] == 1
    assert len(frame.loc[0, "username"]) == len(ten_mb) and frame.loc[0, "password"] == "***"
    served = queue.dequeue_jobs(5)
    assert [job.id for job in served] == ["huge"] and served[0].username == ten_mb
    assert queue.get_job_status("huge-garbage") == "failed"
    queue.save_job_result("huge", {"blob": ten_mb})
    assert json.loads(queue.get_job_result("huge"))["blob"] == ten_mb


# -- poison jobs: JSON nested deeper than the toolkit takes (core/json_depth.py) ----------

def nested_list(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_json_nested_deeper_than_the_limit_is_refused_on_the_way_in(queue: QueueService) -> None:
    # The job object is one level: a field may nest MAX_JSON_DEPTH - 1 levels.
    fits = queue.add_job({"id": "fits", "deep": nested_list(MAX_JSON_DEPTH - 1)})
    assert queue.get_job(fits).extra["deep"] == nested_list(MAX_JSON_DEPTH - 1)
    refused = [
        lambda: queue.add_job({"id": "over", "deep": nested_list(MAX_JSON_DEPTH)}),
        lambda: queue.add_job({"id": "d1500", "priority": 2, "deep": nested_list(1500)}),
        lambda: queue.add_job(Job(id="as-job", extra={"deep": nested_list(1500)})),
        lambda: queue.add_jobs([{"id": "ok-1"}, {"id": "d990", "deep": nested_list(990)}]),
    ]
    for attempt in refused:
        with pytest.raises(InvalidInputError, match=f"deeper than {MAX_JSON_DEPTH} levels"):
            attempt()
    for job_id in ("over", "d1500", "as-job", "ok-1", "d990"):
        assert nothing_stored(queue, job_id)
    queue.save_job_result(fits, nested_list(MAX_JSON_DEPTH))
    with pytest.raises(InvalidInputError, match=f"deeper than {MAX_JSON_DEPTH} levels"):
        queue.save_job_result(fits, nested_list(MAX_JSON_DEPTH + 1))
    with pytest.raises(InvalidInputError, match="deeper than"):
        queue.save_job_result(fits, nested_list(5000))
    assert json.loads(queue.get_job_result(fits)) == nested_list(MAX_JSON_DEPTH)


def write_poison(q: QueueService, job_id: str, body: str) -> None:
    """A job whose data another client rewrote (the Go service accepts 10,000 levels)."""
    q.add_job({"id": job_id, "priority": 2})
    q.redis.set(q.keys.data(job_id), body)


POISONS = {
    "brackets": '{"id": "b", "priority": 2, "deep": ' + "[" * 100_000 + "]" * 100_000 + "}",
    "d990": '{"id": "d", "priority": 2, "deep": ' + "[" * 989 + "]" * 989 + "}",
    "just-over": json.dumps({"id": "o", "priority": 2, "deep": nested_list(MAX_JSON_DEPTH)}),
}


def test_a_poison_job_is_set_aside_on_the_way_out_never_stranded(queue: QueueService) -> None:
    for job_id, body in POISONS.items():
        write_poison(queue, job_id, body)
    good = queue.add_jobs([{"id": f"good-{i}", "priority": 1} for i in range(3)])

    for job_id in POISONS:
        with pytest.raises(CorruptJobError, match=f"{job_id}.*deeper than {MAX_JSON_DEPTH}"):
            queue.get_job(job_id)
    assert [job.id for job in queue.get_pending_jobs()] == good
    frame = queue.pending_jobs_frame()
    assert list(frame["id"]) == good and frame.attrs["corrupt"] == len(POISONS)
    assert queue.processing_frame().empty

    events = EventLog(queue)
    try:
        claimed = queue.dequeue_jobs(10)
        failures = {m["job_id"]: m["data"].get("error", "") for m in events.drain()
                    if m["event"] == "job_failed"}
    finally:
        events.close()
    assert [job.id for job in claimed] == good  # the poison ones came first, and were failed
    assert sorted(failures) == sorted(POISONS)
    assert all(f"deeper than {MAX_JSON_DEPTH} levels" in reason for reason in failures.values())
    for job_id in POISONS:
        assert queue.get_job_status(job_id) == "failed"
        assert not queue.is_job_processing(job_id)
    assert queue.get_processing_count() == len(good)
    assert queue.dequeue_job() is None
