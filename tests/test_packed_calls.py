"""The pre-packed hot calls behave as execute_command does: scripts reloaded, connections retried,
parked connections never shared, leaked or reused dirty."""

from __future__ import annotations

import gc
import os
import threading
from uuid import uuid4

import pytest
import redis

from botrix_toolkit.core.errors import ServerTimeoutError
from botrix_toolkit.core.packed_calls import PARK_LIMIT, PackedCalls
from botrix_toolkit.core.queue import QueueService
from tests.connections import kill_clients_on_this_database
from tests.waiting import wait_for


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
        killed = kill_clients_on_this_database(killer)
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


# -- parked connections (packed_calls._Parking) ------------------------------------------------
def _connections_named(redis_url: str, name: str) -> int:
    """How many connections the server has from clients named ``name``."""
    observer = redis.Redis.from_url(redis_url)
    try:
        return sum(1 for client in observer.client_list() if client.get("name") == name)
    finally:
        observer.close()


def _wait_for_connections_named(redis_url: str, name: str, count: int) -> None:
    """Waits until the server lists ``count`` connections named ``name``.

    A client's close reaches the server's list only when the server next reads
    the socket (later on a loaded machine); so does the connection of the
    cluster check ``from_url`` makes with the same name and closes.
    """
    wait_for(lambda: _connections_named(redis_url, name) == count, f"{count} connections named {name!r}")


def _in_use(client: redis.Redis) -> int:
    """Connections the pool counts as handed out (parked ones included)."""
    return len(client.connection_pool._in_use_connections)


def test_threads_each_use_a_connection_of_their_own_and_leave_at_most_the_limit_parked(
    redis_url: str, key_prefix: str
) -> None:
    name = f"park-{uuid4().hex[:8]}"
    q = QueueService.from_url(redis_url, prefix=key_prefix, client_name=name)
    try:
        assert q._packed.parks
        ids = q.add_jobs({"id": f"t{i:03d}"} for i in range(240))
        start, taken, errors = threading.Barrier(8), [], []

        def work() -> None:
            start.wait()
            try:
                while (job := q.dequeue_job()) is not None:
                    taken.append(job.id)
                    q.complete_job(job.id)
            except Exception as exc:  # reported below: a thread's error must fail the test
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        # a connection shared by two threads at once mixes their replies: jobs lost or taken twice
        assert sorted(taken) == ids
        assert {q.get_job_status(job_id) for job_id in ids} == {"completed"}
        parked = len(q._packed._parking.idle)
        assert 1 <= parked <= PARK_LIMIT
        assert _in_use(q.redis) == parked  # every other connection went back to the pool
        # at most one per thread at a time, the parked ones, and the main thread's
        assert _connections_named(redis_url, name) <= 8 + PARK_LIMIT + 1
    finally:
        q.close()
    _wait_for_connections_named(redis_url, name, 0)
    assert _in_use(q.redis) == 0


def test_many_short_lived_threads_and_services_on_one_client_leak_no_connection(
    redis_url: str, key_prefix: str
) -> None:
    # A dashboard's way: one cached client, a QueueService per rerun, a thread per session.
    name = f"park-{uuid4().hex[:8]}"
    client = redis.Redis.from_url(redis_url, client_name=name)
    try:
        QueueService(client, prefix=key_prefix).add_jobs({"id": f"s{i:03d}"} for i in range(300))
        completed: list[str] = []

        def session() -> None:
            service = QueueService(client, prefix=key_prefix)  # dropped, never closed
            job = service.dequeue_job()
            assert job is not None
            service.complete_job(job.id)
            completed.append(job.id)

        for _wave in range(30):
            threads = [threading.Thread(target=session) for _ in range(10)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        assert len(set(completed)) == 300
        parked = len(QueueService(client, prefix=key_prefix)._packed._parking.idle)
        assert parked <= PARK_LIMIT and _in_use(client) == parked
        assert _connections_named(redis_url, name) <= 10 + PARK_LIMIT + 1
    finally:
        client.close()
    _wait_for_connections_named(redis_url, name, 0)


def test_a_client_dropped_without_close_takes_its_parked_connections_with_it(
    redis_url: str, key_prefix: str
) -> None:
    # The parking is kept per pool without holding the pool: nothing keeps a dropped client alive.
    name = f"park-{uuid4().hex[:8]}"
    for round_number in range(5):
        client = redis.Redis.from_url(redis_url, client_name=name)
        q = QueueService(client, prefix=key_prefix)
        q.add_job({"id": f"g{round_number}"})
        q.complete_job(q.dequeue_job().id)
        assert q._packed._parking.idle
        del q, client
        gc.collect()
    _wait_for_connections_named(redis_url, name, 0)


def test_a_parked_connection_the_server_closed_is_replaced_even_without_retries(
    redis_url: str, key_prefix: str
) -> None:
    # Redis.from_url retries nothing: the parked connection must be checked
    # before use, as the pool checks the ones it hands out.
    client = redis.Redis.from_url(redis_url)
    q = QueueService(client, prefix=key_prefix)
    try:
        assert client.connection_pool.connection_kwargs.get("retry") is None
        q.add_jobs([{"id": "c1"}, {"id": "c2"}])
        assert q.dequeue_job().id == "c1"
        parked = q._packed._parking.idle[-1]
        killer = redis.Redis.from_url(redis_url)
        try:
            assert killer.client_kill_filter(_id=_client_id_of(killer, parked)) == 1
        finally:
            killer.close()
        q.complete_job("c1")
        assert q.dequeue_job().id == "c2"
        assert q.get_job_status("c1") == "completed" and q.get_job_status("c2") == "running"
    finally:
        q.close()


def _client_id_of(observer: redis.Redis, conn: object) -> int:
    """The server's id of the connection ``conn``, found by its local address."""
    host, port = conn._sock.getsockname()[:2]  # type: ignore[attr-defined]
    return next(int(c["id"]) for c in observer.client_list() if c["addr"] == f"{host}:{port}")


def test_a_call_that_timed_out_never_leaves_its_reply_for_the_next_call(redis_url: str, key_prefix: str) -> None:
    client = redis.Redis.from_url(redis_url, socket_timeout=0.5)
    q = QueueService(client, prefix=key_prefix)
    pauser = redis.Redis.from_url(redis_url)
    try:
        q.add_job({"id": "held"})
        assert q.dequeue_job().id == "held"
        q.add_job({"id": "late"})
        pauser.execute_command("CLIENT", "PAUSE", 10_000, "WRITE")  # scripts wait; CLIENT UNPAUSE does not
        try:
            with pytest.raises(ServerTimeoutError):
                q.dequeue_job()  # its reply comes after the pause, on a socket that must be gone
        finally:
            pauser.execute_command("CLIENT", "UNPAUSE")
        # Read from a reused socket, the claim's late reply would be taken as this completion's.
        q.complete_job("held")
        assert q.get_job_status("held") == "completed"
        job = q.dequeue_job()
        pending = client.zrange(q.keys.queue, 0, -1)
        assert (job is None and pending == []) or (job is not None and job.id == "late" and pending == [])
    finally:
        pauser.close()
        q.close()


def test_a_forked_child_never_uses_its_parents_parked_connection(queue: QueueService) -> None:
    queue.add_jobs([{"id": "f1"}, {"id": "f2"}, {"id": "f3"}])
    assert queue.dequeue_job().id == "f1"
    parent_conn = queue._packed._parking.idle[-1]
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports by its exit status
        status = 1
        try:
            job = queue.dequeue_job()
            queue.complete_job(job.id)
            mine = queue._packed._parking.idle
            status = 0 if job.id == "f2" and mine and mine[-1] is not parent_conn else 2
        finally:
            os._exit(status)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # the parent's connection was left alone: its next call reads its own reply
    assert queue._packed._parking.idle[-1] is parent_conn
    assert queue.dequeue_job().id == "f3"
    assert queue.get_job_status("f2") == "completed"


def test_disconnecting_the_pool_closes_the_parked_connections_too(redis_url: str, key_prefix: str) -> None:
    name = f"park-{uuid4().hex[:8]}"
    q = QueueService.from_url(redis_url, prefix=key_prefix, client_name=name)
    try:
        q.add_jobs([{"id": "d1"}, {"id": "d2"}])
        assert q.dequeue_job().id == "d1" and q._packed._parking.idle
        _wait_for_connections_named(redis_url, name, 1)
        q.redis.connection_pool.disconnect()
        _wait_for_connections_named(redis_url, name, 0)
        assert q.dequeue_job().id == "d2"  # parked, disconnected: it connects again when used
    finally:
        q.close()
    _wait_for_connections_named(redis_url, name, 0)


def test_blocking_and_small_pools_park_nothing_and_never_wait_on_a_parked_connection(
    redis_url: str, key_prefix: str
) -> None:
    blocking = redis.Redis(connection_pool=redis.BlockingConnectionPool.from_url(
        redis_url, max_connections=2, timeout=5))
    small = redis.Redis.from_url(redis_url, max_connections=4)
    try:
        assert not PackedCalls(blocking).parks and not PackedCalls(small).parks
        q = QueueService(blocking, prefix=key_prefix)
        subscriber = q.subscribe()  # holds one of the two connections for as long as it lives
        try:
            q.add_jobs({"id": f"b{i}"} for i in range(20))
            for _ in range(20):
                q.complete_job(q.dequeue_job().id)
                assert q.get_queue_length() >= 0  # the other callers still get a connection
            assert q.get_queue_stats()["queue_length"] == 0
        finally:
            subscriber.close()
    finally:
        blocking.close()
        small.close()


def test_a_bulk_add_after_a_script_flush_adds_every_job_once(queue: QueueService) -> None:
    queue.redis.script_flush()  # a restarted server: every call of the round trip is refused, then sent again
    ids = queue.add_jobs({"id": f"b{i:03d}", "priority": i % 3} for i in range(250))  # three script calls
    assert queue.redis.zcard(queue.keys.queue) == 250
    assert sorted(job.id for job in queue.get_pending_jobs()) == sorted(ids)
    assert int(queue.redis.get(queue.keys.sequence)) == 250  # each job placed once
