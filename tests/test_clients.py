"""The client contract (core/clients.py): any redis-py client works, or is refused up front.

Every operation that reads a reply runs here with a client that returns
bytes, one that decodes responses, and one that decodes over RESP3; each must
give the same answers, and none may fail after a script has changed data
(a decoding client used to strand a claimed job in processing). A job whose
data is not UTF-8 is the hard case: a decoding client cannot even read it.
The cluster runs the same operations in test_cluster.py (its ``cq`` fixture
is parametrized the same way).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio

from botrix_toolkit import InvalidInputError, QueueService
from botrix_toolkit.core.cleanup import delete_keys_under
from botrix_toolkit.core.worker import Worker
from botrix_toolkit.frames.events import EventRecorder
from botrix_toolkit.frames.groups import QueueGroup
from tests import waiting

# id -> keyword arguments of redis.Redis.from_url
CLIENT_SETTINGS: dict[str, dict[str, Any]] = {
    "bytes": {},
    "decoded": {"decode_responses": True},
    "decoded-resp3": {"decode_responses": True, "protocol": 3},
}
# Valid JSON whose strings hold bytes that are not UTF-8 (Go reads them as U+FFFD).
NOT_UTF8_JOB = b'{"id":"raw","priority":2,"count":3,"username":"ana\xff\xfe","password":"pw"}'


@pytest.fixture(params=list(CLIENT_SETTINGS), ids=list(CLIENT_SETTINGS))
def client(request: pytest.FixtureRequest, redis_url: str) -> Iterator[redis.Redis]:
    """A client with one of CLIENT_SETTINGS on the test's server."""
    made = redis.Redis.from_url(redis_url, **CLIENT_SETTINGS[request.param])
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def q(client: redis.Redis, key_prefix: str) -> Iterator[QueueService]:
    """A QueueService on ``client``; its keys are deleted after the test."""
    service = QueueService(client, prefix=key_prefix)
    try:
        yield service
    finally:
        delete_keys_under(client, key_prefix, batch_size=500)


def age_lease(q: QueueService, job_id: str, seconds: float) -> None:
    """Moves a job's lease ``seconds`` into the past (server clock)."""
    now_s, now_us = q.redis.time()
    q.redis.zadd(q.keys.leases, {job_id: int(now_s) * 1000 + int(now_us) // 1000 - seconds * 1000})


def write_raw_job(q: QueueService, job_id: str, data: bytes, priority: int = 2) -> None:
    """A job as the Go service (or anything else) may have written it: bytes as they are."""
    q.redis.set(q.keys.data(job_id), data)
    q.redis.set(q.keys.status(job_id), "pending")
    q.redis.zadd(q.keys.queue, {job_id: -priority})


# -- every operation that reads a reply ------------------------------------------

def test_adding_claiming_and_finishing_read_their_replies(q: QueueService) -> None:
    assert q.add_job({"id": "one", "priority": "high", "password": "pw-secret"}) == "one"
    assert q.add_jobs([{"id": f"b{i:03d}", "priority": i % 2} for i in range(150)])[-1] == "b149"
    q.enqueue_job({"id": "go-name", "priority": 0})

    first = q.dequeue_job()
    assert first is not None and (first.id, first.password, first.status) == ("one", "pw-secret", "running")
    q.complete_job("one")
    batch = q.dequeue_jobs(3)
    assert [job.id for job in batch] == ["b001", "b003", "b005"]
    assert all(isinstance(job.id, str) for job in batch)
    assert q.complete_jobs(["b001", "unknown-id"]) == ["b001"]
    assert q.fail_job("b003") is False and q.get_job_status("b003") == "failed"
    assert q.fail_job("b005", requeue=True) is True  # reads the job's data back
    assert q.get_job("b005").priority == 0 and q.get_job_status("b005") == "pending"
    q.cancel_job("b000")
    assert q.cancel_jobs(["b002", "b004", "nope"]) == ["b002", "b004"]
    q.update_job_status("b006", "processing")
    assert q.get_job_status("b006") == "running"
    assert q.get_job_status("one") == "completed"


def test_leases_recovery_and_release_read_their_replies(q: QueueService) -> None:
    q.add_jobs([{"id": name, "priority": 1} for name in ("alive", "dead", "expired", "kept", "freed")])
    assert [job.id for job in q.dequeue_jobs(5)] == ["alive", "dead", "expired", "kept", "freed"]  # first in, first out
    assert q.renew_lease("alive") is True and q.renew_leases(["alive", "gone"]) == 1
    assert q.is_job_processing("kept") and q.get_processing_count() == 5
    assert q.release_jobs(["freed", "never-held"]) == ["freed"]
    for job_id in ("dead", "expired"):
        age_lease(q, job_id, 600)
    q.redis.delete(q.keys.data("expired"))  # recovered jobs without data are failed, with a reason
    assert q.recover_stalled(timeout_s=300) == ["dead"]
    assert q.get_job_status("expired") == "failed"
    assert q.clear_processing() == 2  # alive, kept
    assert q.get_processing_count() == 0


def test_reads_frames_results_and_clearing_read_their_replies(q: QueueService) -> None:
    q.add_jobs([{"id": f"r{i}", "priority": i % 3, "password": "pw-secret"} for i in range(6)])
    assert q.get_queue_length() == 6
    assert q.get_queue_stats() == {"queue_length": 6, "processing_count": 0, "high_priority": 2,
                                   "normal_priority": 2, "low_priority": 2, "ttl_seconds": 3600}
    assert [job.id for job in q.get_pending_jobs()] == ["r2", "r5", "r1", "r4", "r0", "r3"]
    assert q.get_job("r4").priority == 1
    pending = q.pending_jobs_frame()
    assert pending["id"].tolist() == ["r2", "r5", "r1", "r4", "r0", "r3"]
    assert set(pending["password"]) == {"***"}
    assert q.stats_frame().loc[0, "queue_length"] == 6

    held = q.dequeue_job()
    assert held is not None
    processing = q.processing_frame()
    assert processing["id"].tolist() == [held.id] and processing.loc[0, "status"] == "running"
    q.save_job_result(held.id, {"accounts": ["é", 2]})
    q.save_job_result(held.id, {"again": True})  # SET ... GET reads the old value back
    assert json.loads(q.get_job_result(held.id)) == {"again": True}

    q.redis.delete(q.keys.data("r3"))
    assert q.prune_orphans() == ["r3"]
    assert q.clear_queue() == 4
    assert q.health() is True


def test_events_reach_subscribers_as_the_client_decodes_them(q: QueueService) -> None:
    pubsub = q.subscribe()
    try:
        q.add_job({"id": "heard"})
        messages: list[dict[str, Any]] = []

        def two_messages() -> bool:
            message = pubsub.get_message(timeout=0.2)
            if message is not None and message["type"] == "message":
                messages.append(message)
            return len(messages) >= 2

        waiting.wait_for(two_messages, "the add's two events", timeout=10)
    finally:
        pubsub.close()
    decoded = q.redis.get_encoder().decode_responses
    channel = q.keys.updates if decoded else q.keys.updates.encode()
    assert [m["channel"] for m in messages] == [channel, channel]
    assert [json.loads(m["data"])["event"] for m in messages] == ["status_updated", "job_added"]


# -- bytes that are not UTF-8 ---------------------------------------------------------

def test_a_job_whose_data_is_not_utf8_is_served_and_never_stranded(q: QueueService) -> None:
    write_raw_job(q, "raw", NOT_UTF8_JOB)
    assert [job.username for job in q.get_pending_jobs()] == ["ana\ufffd\ufffd"]
    assert q.get_job("raw").username == "ana\ufffd\ufffd"
    job = q.dequeue_job()
    assert job is not None and (job.id, job.username, job.count) == ("raw", "ana\ufffd\ufffd", 3)
    assert q.processing_frame()["id"].tolist() == ["raw"]
    assert q.fail_job("raw", requeue=True) is True  # reads the data back to requeue it
    assert q.dequeue_job() is not None
    q.complete_job("raw")
    assert q.get_job_status("raw") == "completed" and q.get_processing_count() == 0


def test_a_corrupt_job_is_failed_with_its_reason_not_stranded(q: QueueService) -> None:
    write_raw_job(q, "broken", b"\xff not json")
    write_raw_job(q, "wrong-type", b"{}")
    q.redis.delete(q.keys.status("wrong-type"))
    q.redis.rpush(q.keys.status("wrong-type"), "a list")  # the claim sets it aside, naming why
    assert q.dequeue_jobs(5) == []
    assert q.get_job_status("broken") == "failed"
    assert q.get_queue_length() == 0 and q.get_processing_count() == 0


def test_a_result_that_is_not_utf8_is_read_and_replaced(q: QueueService) -> None:
    q.add_job({"id": "res"})
    q.redis.set(q.keys.results("res"), b'"\xff"')
    assert q.get_job_result("res") == '"\ufffd"'
    q.save_job_result("res", "fine")  # reads the old, undecodable value back: must not fail
    assert q.get_job_result("res") == '"fine"'


# -- the layers above the queue -----------------------------------------------------

def test_a_worker_runs_on_any_client(q: QueueService) -> None:
    q.add_jobs([{"id": f"w{i}"} for i in range(30)])
    write_raw_job(q, "raw", NOT_UTF8_JOB, priority=0)
    stats = Worker(q, lambda job: {"user": job.username}, concurrency=2, batch=4).run(until_empty=True)
    assert stats.completed == 31
    assert q.get_queue_length() == 0 and q.get_processing_count() == 0
    assert json.loads(q.get_job_result("raw")) == {"user": "ana\ufffd\ufffd"}


@pytest.mark.parametrize("given", ["service", "client"])
def test_an_event_recorder_records_through_any_client(q: QueueService, given: str) -> None:
    source = q if given == "service" else q.redis
    with EventRecorder(source, channel=q.keys.updates) as recorder:
        q.add_job({"id": "rec", "password": "pw-secret"})
        q.dequeue_job()
        q.complete_job("rec")
        waiting.wait_for(lambda: recorder.received >= 5, "the five events", timeout=10)
    events = recorder.frame()
    assert events["event"].tolist() == ["status_updated", "job_added", "status_updated",
                                        "status_updated", "job_completed"]
    assert not events["data"].astype(str).str.contains("pw-secret").any()


def test_a_queue_group_reads_through_any_client(client: redis.Redis, key_prefix: str) -> None:
    services = [QueueService(client, prefix=f"{key_prefix}:{name}") for name in ("a", "b")]
    group = QueueGroup(services)
    try:
        services[1].add_job({"id": "only-b", "priority": 2})
        assert group.pending_jobs_frame()["id"].tolist() == ["only-b"]
        assert group.stats_frame()["queue_length"].tolist() == [0, 1]
    finally:
        delete_keys_under(client, key_prefix, batch_size=500)


def test_from_url_passes_decode_responses_and_still_reads_bytes(redis_url: str, key_prefix: str) -> None:
    q = QueueService.from_url(redis_url, prefix=key_prefix, decode_responses=True)
    try:
        write_raw_job(q, "raw", NOT_UTF8_JOB)
        job = q.dequeue_job()
        assert job is not None and job.username == "ana\ufffd\ufffd"
        assert q.redis.get(q.keys.status("raw")) == "running", "the client itself still decodes"
    finally:
        delete_keys_under(q.redis, key_prefix, batch_size=500)
        q.close()


# -- refused up front -------------------------------------------------------------------

def test_clients_it_cannot_use_are_refused_up_front(redis_url: str, key_prefix: str) -> None:
    plain = redis.Redis.from_url(redis_url)
    try:
        with pytest.raises(InvalidInputError, match="pipeline"):
            QueueService(plain.pipeline(), prefix=key_prefix)
        latin = redis.Redis.from_url(redis_url, encoding="latin-1", decode_responses=True)
        with pytest.raises(InvalidInputError, match="encoding='utf-8'"):
            QueueService(latin, prefix=key_prefix)
        async_client = redis.asyncio.Redis.from_url(redis_url)
        with pytest.raises(InvalidInputError, match=r"redis\.Redis or redis\.cluster\.RedisCluster"):
            QueueService(async_client, prefix=key_prefix)  # type: ignore[arg-type]  # the refusal is the test
        asyncio.run(async_client.aclose())
        with pytest.raises(InvalidInputError, match="from_url"):
            QueueService(redis_url, prefix=key_prefix)  # type: ignore[arg-type]  # the refusal is the test
        assert plain.keys(f"{key_prefix}*") == [], "nothing was written by a refused client"
    finally:
        plain.close()
