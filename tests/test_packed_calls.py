"""The pre-packed hot calls behave as execute_command does: scripts reloaded, connections retried."""

from __future__ import annotations

import redis

from botrix_toolkit.core.packed_calls import PackedCalls
from botrix_toolkit.core.queue import QueueService


def test_single_job_cycle_goes_packed_and_survives_a_script_flush(queue: QueueService) -> None:
    assert queue._packed.usable
    queue.add_jobs([{"id": f"p{i}", "priority": 1} for i in range(3)])
    assert queue.dequeue_job().id == "p0"
    queue.redis.script_flush()
    job = queue.dequeue_job()  # NOSCRIPT: loaded again, then run
    assert job is not None and job.id == "p1" and job.status == "running"
    queue.redis.script_flush()
    queue.complete_job("p1")
    assert queue.get_job_status("p1") == "completed"


def test_a_killed_connection_is_retried_like_execute_command(queue: QueueService, redis_url: str) -> None:
    queue.add_jobs([{"id": "k1", "priority": 1}, {"id": "k2", "priority": 1}])
    assert queue.dequeue_job().id == "k1"
    killer = redis.Redis.from_url(redis_url)
    try:
        killed = killer.client_kill_filter(_type="normal", skipme=True)
    finally:
        killer.close()
    assert killed >= 1
    assert queue.dequeue_job().id == "k2"  # the pooled connection was dropped: reconnected, sent again
    queue.complete_job("k2")
    assert queue.get_job_status("k2") == "completed"


def test_decoded_replies_and_the_clients_that_keep_the_usual_path(redis_url: str, key_prefix: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    q = QueueService(client, prefix=key_prefix)
    try:
        assert q._packed.usable
        q.add_job({"id": "d1", "priority": 2})
        q.complete_job("d1")  # set_status's one-letter answer arrives as text: still understood
        assert q.get_job_status("d1") == "completed"
    finally:
        client.close()
    single = redis.Redis.from_url(redis_url, single_connection_client=True)
    latin = redis.Redis.from_url(redis_url, encoding="latin-1")
    try:
        assert not PackedCalls(single).usable and not PackedCalls(latin).usable
    finally:
        single.close()
        latin.close()


def test_many_calls_read_every_reply_before_raising_the_first_error(queue: QueueService) -> None:
    calls, client = queue._packed, queue.redis
    client.set(f"{queue.keys.prefix}:text", "a string")
    client.rpush(f"{queue.keys.prefix}:list", "x")
    commands = [calls.pack("GET", f"{queue.keys.prefix}:text"),
                calls.pack("GET", f"{queue.keys.prefix}:list"),  # WRONGTYPE
                calls.pack("PING")]
    try:
        calls.call_many(commands)
    except redis.ResponseError as exc:
        assert "WRONGTYPE" in str(exc)
    else:
        raise AssertionError("the WRONGTYPE reply was not raised")
    # The PONG after the error was read too: the pooled connection answers the next call in step.
    for _ in range(3):
        assert calls.call_many([calls.pack("ECHO", "first"), calls.pack("ECHO", "second")]) == [b"first", b"second"]
