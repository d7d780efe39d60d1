"""The state a user reads is the true one: get_job after each transition; failing only what is held.

``get_job`` takes the status from the status key and the times from what the
toolkit knows (when the status key was written), and writes nothing: the job
JSON the Go service reads stays byte for byte as it was.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from botrix_toolkit import InvalidInputError, JobNotFoundError, QueueService
from tests.event_log import EventLog
from tests.test_queue import age_lease, go_take

# Times are read to the ms from the status key's expiry, which the server
# sets from its cached clock: a bracket of server times taken before and
# after an operation holds them to within a few ms (Redis 7.0 was seen 1.007 ms
# behind `before` on a loaded CI machine). A time kept to the second falls outside.
CLOCK_SLACK = timedelta(milliseconds=5)


def stored(queue: QueueService, job_id: str) -> dict[str, object]:
    """Everything Redis holds for one job and the queue keys, TTLs included."""
    keys, client = queue.keys, queue.redis
    return {
        "data": client.get(keys.data(job_id)),
        "data_ttl_set": client.ttl(keys.data(job_id)) > 0,
        "status": client.get(keys.status(job_id)),
        "queue": client.zrange(keys.queue, 0, -1, withscores=True),
        "processing": sorted(client.smembers(keys.processing)),
        "leases": client.zrange(keys.leases, 0, -1, withscores=True),
        "sequence": client.get(keys.sequence),
    }


def server_now(queue: QueueService) -> datetime:
    seconds, micros = queue.redis.time()
    return datetime.fromtimestamp(seconds + micros / 1e6, UTC)


def assert_between(moment: datetime | None, before: datetime, after: datetime) -> None:
    assert moment is not None
    assert before - CLOCK_SLACK <= moment <= after + CLOCK_SLACK, (before, moment, after)


# -- get_job after each transition ------------------------------------------------
def test_get_job_of_a_pending_job(queue: QueueService) -> None:
    queue.add_job({"id": "p1", "priority": 2})
    job = queue.get_job("p1")
    assert (job.status, job.started_at, job.completed_at) == ("pending", None, None)


def test_get_job_after_a_claim_has_the_status_and_start_of_the_claim(queue: QueueService) -> None:
    queue.add_job({"id": "c1"})
    before = server_now(queue)
    claimed = queue.dequeue_job()
    after = server_now(queue)
    assert claimed.status == "running"
    assert_between(claimed.started_at, before, after)
    job = queue.get_job("c1")
    assert job.status == "running"
    assert_between(job.started_at, before, after)
    assert job.completed_at is None


def test_get_job_keeps_the_claim_time_when_the_lease_is_renewed(queue: QueueService) -> None:
    queue.add_job({"id": "c1"})
    before = server_now(queue)
    queue.dequeue_job()
    after = server_now(queue)
    age_lease(queue, "c1", 30)
    assert queue.renew_lease("c1")
    assert_between(queue.get_job("c1").started_at, before, after)


def test_get_job_after_completion(queue: QueueService) -> None:
    queue.add_job({"id": "d1"})
    claimed = queue.dequeue_job()
    before = server_now(queue)
    queue.complete_job("d1")
    after = server_now(queue)
    job = queue.get_job("d1")
    assert job.status == "completed"
    assert_between(job.completed_at, before, after)
    assert claimed.started_at is not None and claimed.started_at <= job.completed_at


@pytest.mark.parametrize("claim_first", [False, True])
def test_get_job_after_cancel(queue: QueueService, claim_first: bool) -> None:
    queue.add_job({"id": "x1"})
    if claim_first:
        queue.dequeue_job()
    before = server_now(queue)
    queue.cancel_job("x1")
    after = server_now(queue)
    job = queue.get_job("x1")
    assert job.status == "cancelled"
    assert_between(job.completed_at, before, after)


def test_get_job_after_a_failure_and_after_a_requeue(queue: QueueService) -> None:
    queue.add_jobs([{"id": "f1"}, {"id": "r1", "priority": 2}])
    queue.dequeue_jobs(2)
    before = server_now(queue)
    queue.fail_job("f1", error="boom")
    after = server_now(queue)
    failed = queue.get_job("f1")
    assert failed.status == "failed"
    assert_between(failed.completed_at, before, after)

    queue.fail_job("r1", requeue=True)
    again = queue.get_job("r1")
    assert (again.status, again.priority, again.started_at, again.completed_at) == ("pending", 1, None, None)


def test_get_job_after_recovery(queue: QueueService) -> None:
    queue.add_job({"id": "s1"})
    queue.dequeue_job()
    assert queue.recover_stalled(timeout_s=0) == ["s1"]
    job = queue.get_job("s1")
    assert (job.status, job.started_at, job.completed_at) == ("pending", None, None)


def test_get_job_of_a_job_the_go_service_took(queue: QueueService) -> None:
    queue.add_job({"id": "go-1"})
    before = server_now(queue)
    go_take(queue, "go-1")  # SET status running EX 3600, as Go's UpdateJobStatus does
    after = server_now(queue)
    job = queue.get_job("go-1")
    assert job.status == "running"
    assert_between(job.started_at, before, after)


def test_get_job_writes_nothing_and_leaves_gos_json_as_it_was(queue: QueueService) -> None:
    queue.add_job({"id": "g1", "username": "ana", "password": "s3cret"})
    queue.dequeue_job()
    queue.complete_job("g1")
    before = stored(queue, "g1")
    job = queue.get_job("g1")
    assert job.status == "completed" and job.password == "s3cret"
    assert stored(queue, "g1") == before
    assert b'"status":"pending"' in before["data"], "the JSON keeps what the job was added with"
    assert b"completed_at" not in before["data"]


def test_get_job_keeps_the_stored_status_when_the_status_key_is_gone_or_odd(queue: QueueService) -> None:
    queue.add_jobs([{"id": "gone"}, {"id": "odd"}, {"id": "list"}])
    queue.redis.delete(queue.keys.status("gone"))
    queue.redis.set(queue.keys.status("odd"), b"\xff\xfe not a status")
    queue.redis.delete(queue.keys.status("list"))
    queue.redis.rpush(queue.keys.status("list"), "x")
    for job_id in ("gone", "odd", "list"):
        job = queue.get_job(job_id)
        assert (job.status, job.started_at, job.completed_at) == ("pending", None, None)


def test_a_status_written_with_a_longer_ttl_gives_no_time(queue: QueueService) -> None:
    # Written by a writer whose TTL this service does not know: no time is made up.
    queue.add_job({"id": "long"})
    queue.dequeue_job()
    queue.redis.set(queue.keys.status("long"), "running", ex=10 * queue.ttl)
    assert queue.get_job("long").started_at is None


def test_get_job_of_an_unknown_id(queue: QueueService) -> None:
    with pytest.raises(JobNotFoundError, match="'nobody'"):
        queue.get_job("nobody")


# -- fail_job only fails a held job ----------------------------------------------------
@pytest.mark.parametrize("requeue", [False, True])
def test_failing_a_pending_job_is_refused_naming_its_state_with_nothing_written(
    queue: QueueService, events: EventLog, requeue: bool
) -> None:
    queue.add_jobs([{"id": "waiting", "priority": 2}, {"id": "other"}])
    events.drain()
    before = stored(queue, "waiting")
    with pytest.raises(InvalidInputError, match=r"'waiting'.*pending") as caught:
        queue.fail_job("waiting", requeue=requeue)
    assert isinstance(caught.value, ValueError)
    assert "cancel_job" in str(caught.value)
    assert stored(queue, "waiting") == before
    assert events.drain() == []
    assert queue.get_job("waiting").priority == 2


@pytest.mark.parametrize("requeue", [False, True])
@pytest.mark.parametrize("finish", ["complete_job", "cancel_job"])
def test_failing_a_finished_job_is_refused_naming_its_state(
    queue: QueueService, events: EventLog, requeue: bool, finish: str
) -> None:
    queue.add_job({"id": "done"})
    queue.dequeue_job()
    getattr(queue, finish)("done")
    events.drain()
    before = stored(queue, "done")
    state = {"complete_job": "completed", "cancel_job": "cancelled"}[finish]
    with pytest.raises(InvalidInputError, match=state):
        queue.fail_job("done", requeue=requeue)
    assert stored(queue, "done") == before
    assert events.drain() == []


def test_failing_an_unknown_job_is_job_not_found(queue: QueueService) -> None:
    for requeue in (False, True):
        with pytest.raises(JobNotFoundError, match="'ghost'"):
            queue.fail_job("ghost", requeue=requeue)


def test_a_job_the_go_service_holds_can_be_failed(queue: QueueService) -> None:
    queue.add_jobs([{"id": "go-a"}, {"id": "go-b"}])
    go_take(queue, "go-a")
    go_take(queue, "go-b")
    assert queue.fail_job("go-a") is False and queue.get_job_status("go-a") == "failed"
    assert queue.fail_job("go-b", requeue=True) is True and queue.get_job_status("go-b") == "pending"


def test_cancelling_stays_possible_in_any_state(queue: QueueService) -> None:
    queue.add_jobs([{"id": "running"}, {"id": "done"}, {"id": "waiting"}])
    assert [job.id for job in queue.dequeue_jobs(2)] == ["running", "done"]
    queue.complete_job("done")
    for job_id in ("running", "done", "waiting"):
        queue.cancel_job(job_id)
        assert queue.get_job(job_id).status == "cancelled"
