"""The toolkit and the Go service on one Redis: each reads what the other writes.

Go's side is played with raw redis commands, in the order docs/wire-format.md gives
for the Go service, on the Go-written job JSON of data/fixtures/.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from botrix_toolkit import Job, QueueService
from botrix_toolkit.core.keys import QueueKeys
from tests.go_json import GO_KINDS, assert_go_decodable

FIXTURES = Path(__file__).resolve().parent.parent / "data" / "fixtures"
FIXTURE_FILES = sorted(FIXTURES.glob("*.json"))
GO_TTL = 3600
TIME_FIELDS = ("created_at", "updated_at", "deleted_at", "started_at", "completed_at")


def fixture_bytes(path: Path) -> bytes:
    return path.read_bytes()


def go_add_job(client: redis.Redis, keys: QueueKeys, raw: bytes) -> str:
    """Go's AddJob, command by command, including its EXPIRE of the whole queue."""
    document = json.loads(raw.decode("utf-8", "replace"))  # as Go decodes bad UTF-8
    job_id = document["id"]
    client.set(keys.data(job_id), raw, ex=GO_TTL)
    client.set(keys.status(job_id), "pending", ex=GO_TTL)
    client.zadd(keys.queue, {job_id: -document["priority"]})
    client.expire(keys.queue, GO_TTL)
    return job_id


@pytest.fixture
def raw_client(queue: QueueService) -> redis.Redis:
    """Go's connection: the queue's server, bytes responses."""
    return queue.redis


def test_there_are_enough_go_fixtures_and_they_are_go_json() -> None:
    assert len(FIXTURE_FILES) >= 6
    ids = set()
    for path in FIXTURE_FILES:
        raw = fixture_bytes(path)
        assert not raw.endswith(b"\n"), f"{path.name}: the bytes must be the stored value"
        assert b": " not in raw and b", " not in raw, f"{path.name}: Go writes compact JSON"
        ids.add(assert_go_decodable(raw)["id"])
    assert len(ids) == len(FIXTURE_FILES)
    assert "jöb-✓-1" in ids


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.stem)
def test_a_go_job_read_and_written_unchanged_keeps_its_content(path: Path) -> None:
    raw = fixture_bytes(path)
    original = json.loads(raw)
    text = Job.from_wire(raw, original["id"]).to_json()
    assert json.loads(text) == original
    for name in TIME_FIELDS:
        if isinstance(original.get(name), str):
            assert f'"{name}":"{original[name]}"' in text
    # Without unknown fields and HTML escapes, the toolkit's bytes are Go's bytes.
    if b"\\u00" not in raw and set(original) <= set(GO_KINDS):
        assert text.encode() == raw


def test_get_pending_jobs_reads_go_written_jobs_in_dequeue_order(queue: QueueService, raw_client: redis.Redis) -> None:
    originals = {}
    for path in FIXTURE_FILES:
        raw = fixture_bytes(path)
        originals[go_add_job(raw_client, queue.keys, raw)] = json.loads(raw)
    pending = queue.get_pending_jobs()
    expected_order = sorted(originals, key=lambda i: (-originals[i]["priority"], i.encode()))
    assert [job.id for job in pending] == expected_order
    assert pending[0].id == "go-prio7-1"
    for job in pending:
        original = originals[job.id]
        assert (job.priority, job.count, job.username, job.password) == (
            original["priority"], original["count"], original.get("username", ""), original.get("password", ""))
        assert job.extra == {k: v for k, v in original.items() if k not in GO_KINDS}
        assert "s3cr3t-Pa55" not in repr(job)


def test_dequeue_serves_go_written_jobs_with_every_field(queue: QueueService, raw_client: redis.Redis) -> None:
    originals = {}
    for path in FIXTURE_FILES:
        raw = fixture_bytes(path)
        originals[go_add_job(raw_client, queue.keys, raw)] = json.loads(raw)
    served = []
    while (job := queue.dequeue_job()) is not None:
        served.append(job.id)
        original = originals[job.id]
        assert job.status == "running"
        assert raw_client.get(queue.keys.status(job.id)) == b"running"
        assert raw_client.sismember(queue.keys.processing, job.id)
        assert job.extra == {k: v for k, v in original.items() if k not in GO_KINDS}
        assert (job.progress, job.successful, job.failed, job.error_msg) == (
            original["progress"], original["successful"], original["failed"], original.get("error_msg", ""))
    assert sorted(served) == sorted(originals)
    assert served[0] == "go-prio7-1"


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.stem)
def test_requeue_of_a_go_job_keeps_unknown_fields_and_unchanged_times(
    queue: QueueService, raw_client: redis.Redis, path: Path
) -> None:
    raw = fixture_bytes(path)
    original = json.loads(raw)
    job_id = go_add_job(raw_client, queue.keys, raw)
    job = queue.dequeue_job()
    assert job is not None and job.id == job_id
    assert queue.fail_job(job_id, requeue=True) is True

    written = raw_client.get(queue.keys.data(job_id))
    document = assert_go_decodable(written)
    text = written.decode()
    lowered = max(original["priority"] - 1, 0)
    assert document["priority"] == lowered
    assert document["status"] == "pending"
    assert set(document) == set(original), "no field lost, none added"
    for name, value in original.items():
        if name not in ("priority", "status", "updated_at"):
            assert document[name] == value, name
    for name in TIME_FIELDS:
        if name != "updated_at" and isinstance(original.get(name), str):
            assert f'"{name}":"{original[name]}"' in text, f"{name} not byte for byte"
    assert document["updated_at"] != original["updated_at"]

    assert -lowered - 1 < raw_client.zscore(queue.keys.queue, job_id) < -lowered  # back of its level
    assert raw_client.get(queue.keys.status(job_id)) == b"pending"
    assert not raw_client.sismember(queue.keys.processing, job_id)
    assert GO_TTL - 10 <= raw_client.ttl(queue.keys.data(job_id)) <= GO_TTL
    again = queue.dequeue_job()
    assert again is not None and again.id == job_id and again.priority == lowered


def test_priority_seven_go_job_is_requeued_as_six(queue: QueueService, raw_client: redis.Redis) -> None:
    job_id = go_add_job(raw_client, queue.keys, fixture_bytes(FIXTURES / "go_priority7.json"))
    assert queue.dequeue_job().id == job_id
    queue.fail_job(job_id, requeue=True)
    assert json.loads(raw_client.get(queue.keys.data(job_id)))["priority"] == 6
    assert -7 < raw_client.zscore(queue.keys.queue, job_id) < -6
    assert queue.get_queue_stats()["high_priority"] == 1


def test_jobs_added_by_the_toolkit_have_exactly_gos_keys(queue: QueueService, raw_client: redis.Redis) -> None:
    keys = queue.keys
    ids = [queue.add_job({"id": "tk-high", "priority": "high", "count": 3, "username": "u", "password": "p"})]
    ids += queue.add_jobs([{"id": "tk-normal"}, Job(id="tk-low", priority=0), {"id": "tk-ü", "priority": 2}])
    priorities = {"tk-high": 2, "tk-normal": 1, "tk-low": 0, "tk-ü": 2}

    stored = {k.decode() for k in raw_client.scan_iter(match=f"{keys.prefix}:*", count=1000)}
    # Go's keys, and the toolkit's sequence counter, which Go never reads.
    expected = {keys.queue, keys.sequence} | {keys.data(i) for i in ids} | {keys.status(i) for i in ids}
    assert stored == expected
    assert raw_client.type(keys.queue) == b"zset"
    assert raw_client.ttl(keys.queue) == -1, "the toolkit must not copy Go's EXPIRE of the queue"
    for job_id in ids:
        # inside Go's level, so that its overlapping ZCOUNT ranges count it once
        assert -priorities[job_id] - 1 < raw_client.zscore(keys.queue, job_id) < -priorities[job_id]
        assert raw_client.get(keys.status(job_id)) == b"pending"
        assert GO_TTL - 10 <= raw_client.ttl(keys.status(job_id)) <= GO_TTL
        assert GO_TTL - 10 <= raw_client.ttl(keys.data(job_id)) <= GO_TTL
        document = assert_go_decodable(raw_client.get(keys.data(job_id)))
        assert document["id"] == job_id
        assert document["priority"] == priorities[job_id]
        assert document["status"] == "pending"
        assert document["deleted_at"] is None
        assert document["created_at"] != "0001-01-01T00:00:00Z"
    high = json.loads(raw_client.get(keys.data("tk-high")))
    assert (high["count"], high["username"], high["password"]) == (3, "u", "p")


def test_a_go_consumer_pops_toolkit_jobs_in_priority_order(queue: QueueService, raw_client: redis.Redis) -> None:
    queue.add_jobs([{"id": "b-low", "priority": 0}, {"id": "b-high", "priority": 2}, {"id": "b-normal"}])
    popped = []
    # Go's DequeueJob: ZPOPMIN, GET data (decoded), SADD processing, SET status running.
    while member := raw_client.zpopmin(queue.keys.queue):
        job_id = member[0][0].decode()
        document = assert_go_decodable(raw_client.get(queue.keys.data(job_id)))
        raw_client.sadd(queue.keys.processing, job_id)
        raw_client.set(queue.keys.status(job_id), "running", ex=GO_TTL)
        popped.append(document["id"])
    assert popped == ["b-high", "b-normal", "b-low"]
    # The toolkit finishes what Go took.
    assert queue.complete_jobs(popped) == popped
    assert queue.get_processing_count() == 0
    assert [queue.get_job_status(i) for i in popped] == ["completed"] * 3


# Go's decoder replaces invalid UTF-8 and lone UTF-16 surrogates with U+FFFD
# instead of failing ("encoding/json": Unmarshal), so Go serves such jobs.
GO_TOLERATED_TEXT = {
    "lone_surrogate_escape": b'{"id":"odd-1","username":"x\\ud800y","priority":1}',
    "invalid_utf8_byte": b'{"id":"odd-1","username":"x\xffy","priority":1}',
}


@pytest.mark.parametrize("raw", list(GO_TOLERATED_TEXT.values()), ids=list(GO_TOLERATED_TEXT))
def test_a_job_go_can_decode_is_served_and_requeued(queue: QueueService, raw_client: redis.Redis, raw: bytes) -> None:
    go_add_job(raw_client, queue.keys, raw)
    job = queue.dequeue_job()
    assert job is not None and job.id == "odd-1", "Go would serve this job: the toolkit must too"
    assert queue.fail_job("odd-1", requeue=True) is True
    written = raw_client.get(queue.keys.data("odd-1"))
    written.decode("utf-8")  # strict: what we write is valid UTF-8
    document = assert_go_decodable(written)
    assert document["username"].startswith("x") and document["username"].endswith("y")
    assert queue.get_job_status("odd-1") == "pending" and queue.get_processing_count() == 0
