"""Worker against a real server: results, retries, leases, batches and signals."""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from botrix_toolkit.core.queue import QueueService
from botrix_toolkit.core.worker import RETRIES_FIELD, Worker
from botrix_toolkit.server.embedded import EmbeddedServer
from botrix_toolkit.server.ports import free_port
from tests import handlers
from tests.waiting import wait_for

REPO = Path(__file__).resolve().parent.parent
# Liveness bounds only: generous, never a speed claim.
LIVENESS_S = 60


def test_handler_result_is_saved_and_job_completed(queue: QueueService) -> None:
    ids = queue.add_jobs([{"count": n, "username": f"u{n}"} for n in (1, 2, 3)])
    stats = Worker(queue, handlers.echo).run(until_empty=True)
    assert stats.completed == 3 and stats.failed == 0
    for n, job_id in zip((1, 2, 3), ids):
        assert queue.get_job_status(job_id) == "completed"
        assert json.loads(queue.get_job_result(job_id)) == {"count": n, "user": f"u{n}"}
    assert queue.get_processing_count() == 0


def test_none_result_saves_nothing(queue: QueueService) -> None:
    job_id = queue.add_job({"count": 1})
    Worker(queue, handlers.nothing).run(until_empty=True)
    assert queue.get_job_status(job_id) == "completed"
    with pytest.raises(LookupError):
        queue.get_job_result(job_id)


def test_exception_fails_after_max_retries_counting_retries(
    queue: QueueService, caplog: pytest.LogCaptureFixture
) -> None:
    job_id = queue.add_job(
        {"count": 1, "username": "alice", "password": "s3cret-pw", "priority": 2})
    stats = Worker(queue, handlers.explode, max_retries=2, poll_interval=0.05).run(until_empty=True)
    assert stats.requeued == 2 and stats.failed == 1 and stats.completed == 0
    assert queue.get_job_status(job_id) == "failed"
    job = queue.get_job(job_id)
    assert job.extra[RETRIES_FIELD] == 2
    # Go's requeue lowers the priority by one each time, not below 0.
    assert job.priority == 0
    assert queue.get_queue_length() == 0 and queue.get_processing_count() == 0
    assert "boom for alice" in caplog.text
    assert "s3cret-pw" not in caplog.text


def test_exception_text_is_the_job_error(queue: QueueService) -> None:
    job_id = queue.add_job({"count": 1, "username": "bob", "password": "hunter2"})
    with queue.subscribe() as pubsub:
        pubsub.get_message(timeout=1)  # the subscribe confirmation
        Worker(queue, handlers.explode, max_retries=0).run(until_empty=True)
        messages = []
        while (message := pubsub.get_message(timeout=1)) is not None:
            if message["type"] == "message":
                messages.append(json.loads(message["data"]))
    failed = [m for m in messages if m["event"] == "job_failed" and m["job_id"] == job_id]
    assert len(failed) == 1
    assert failed[0]["data"]["error"] == "RuntimeError: boom for bob with ***"


def test_secrets_at_any_depth_are_blanked_in_a_handler_error(
    queue: QueueService, caplog: pytest.LogCaptureFixture
) -> None:
    queue.add_job({"meta": {"api_key": "KEY-9f3", "creds": [{"Password": "PW-71c"}]}})
    stats = Worker(queue, handlers.explode_nested, max_retries=0).run(until_empty=True)
    assert stats.failed == 1
    assert "bad key *** for [{'Password': '***'}]" in caplog.text
    assert "KEY-9f3" not in caplog.text and "PW-71c" not in caplog.text


def test_lease_is_renewed_while_a_slow_handler_runs(queue: QueueService) -> None:
    job_id = queue.add_job({"count": 15})  # handlers.slow: 1.5 s
    worker = Worker(queue, handlers.slow, lease_s=0.3, poll_interval=0.05)
    thread = threading.Thread(target=worker.run, kwargs={"max_jobs": 1})
    thread.start()
    try:
        wait_for(lambda: queue.is_job_processing(job_id), "the job to be claimed")
        recovered = []
        # A stall timeout longer than the renewal interval (0.1 s): a live lease
        # must never look stalled.
        while thread.is_alive():
            recovered += queue.recover_stalled(timeout_s=0.6)
            time.sleep(0.1)
    finally:
        thread.join(LIVENESS_S)
    assert recovered == []
    assert queue.get_job_status(job_id) == "completed"
    assert worker.stats.completed == 1


def test_without_renewal_the_same_job_would_be_recovered(queue: QueueService) -> None:
    """Control for the test above: a held job nobody renews is taken back."""
    job_id = queue.add_job({"count": 1})
    assert [job.id for job in queue.dequeue_jobs(1)] == [job_id]
    queue.recover_stalled(timeout_s=0.3)  # the first call may only stamp the lease
    wait_for(lambda: job_id in queue.recover_stalled(timeout_s=0.3) or
              queue.get_job_status(job_id) == "pending", "the stalled job to be recovered")
    assert queue.get_job_status(job_id) == "pending"


def test_batch_mode_claims_and_completes_in_batches(queue: QueueService) -> None:
    ids = queue.add_jobs([{"count": n} for n in range(1, 26)])
    claims: list[int] = []
    completions: list[int] = []
    original_dequeue, original_complete = queue.dequeue_jobs, queue.complete_jobs

    def counting_dequeue(n: int):
        jobs = original_dequeue(n)
        claims.append(len(jobs))
        return jobs

    def counting_complete(job_ids):
        job_ids = list(job_ids)
        completions.append(len(job_ids))
        return original_complete(job_ids)

    queue.dequeue_jobs, queue.complete_jobs = counting_dequeue, counting_complete
    stats = Worker(queue, handlers.echo, batch=10, concurrency=2).run(until_empty=True)
    assert stats.completed == 25
    assert max(claims) == 10
    assert sum(claims) == 25
    assert max(completions) > 1  # completions went several at a time
    assert all(queue.get_job_status(job_id) == "completed" for job_id in ids)


def test_concurrency_runs_handlers_at_the_same_time(queue: QueueService) -> None:
    ids = queue.add_jobs([{"count": 1} for _ in range(4)])
    # Each call waits until four run at once: with fewer threads it times out.
    barrier = threading.Barrier(4, timeout=LIVENESS_S)
    stats = Worker(queue, handlers.rendezvous(barrier), concurrency=4).run(until_empty=True)
    assert stats.completed == 4 and not barrier.broken
    assert sorted(json.loads(queue.get_job_result(job_id)) for job_id in ids) == [0, 1, 2, 3]


def test_invalid_settings_are_refused(queue: QueueService) -> None:
    with pytest.raises(ValueError, match="concurrency"):
        Worker(queue, handlers.echo, concurrency=0)
    with pytest.raises(ValueError, match="lease_s"):
        Worker(queue, handlers.echo, lease_s=0)
    # the message shows the argument's own value (it once showed max_retries's, 3)
    with pytest.raises(ValueError, match=r"^lease_s must be a number of seconds > 0; got -1$"):
        Worker(queue, handlers.echo, lease_s=-1)
    with pytest.raises(ValueError, match=r"^poll_interval must be a number of seconds > 0; got 'fast'$"):
        Worker(queue, handlers.echo, poll_interval="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="handler"):
        Worker(queue, "not callable")  # type: ignore[arg-type]


def test_max_jobs_stops_after_that_many(queue: QueueService) -> None:
    queue.add_jobs([{"count": 1} for _ in range(5)])
    stats = Worker(queue, handlers.echo, batch=2).run(max_jobs=3)
    assert stats.claimed == 3 and stats.completed == 3
    assert queue.get_queue_length() == 2


def test_abort_hands_held_jobs_back_with_their_priority(queue: QueueService) -> None:
    job_id = queue.add_job({"count": 100, "priority": "high"})  # handlers.slow: 10 s
    worker = Worker(queue, handlers.slow, poll_interval=0.05)
    thread = threading.Thread(target=worker.run)
    thread.start()
    wait_for(lambda: queue.is_job_processing(job_id), "the job to be claimed")
    worker.abort()
    thread.join(LIVENESS_S)
    assert not thread.is_alive()
    assert worker.stats.returned == 1
    assert queue.get_job_status(job_id) == "pending"
    assert queue.get_job(job_id).priority == 2
    assert queue.get_queue_stats()["high_priority"] == 1
    assert "retries" not in queue.get_job(job_id).extra  # handing back is not a failure


@pytest.mark.slow
def test_outcome_is_reported_after_the_server_comes_back(tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """A completion that cannot reach the server is sent again, not lost."""
    caplog.set_level(logging.WARNING, logger="botrix_toolkit.core.worker")
    server = EmbeddedServer(data_dir=tmp_path, port=free_port())
    url = server.start()
    q = QueueService.from_url(url, prefix="outage:jobs", socket_timeout=2)
    running, may_finish = threading.Event(), threading.Event()

    def handler(job):
        running.set()
        may_finish.wait(LIVENESS_S)
        # No result: a result is saved by the handler's thread, and this test is about the completion.

    worker = Worker(q, handler, lease_s=30, poll_interval=0.05)
    # A daemon: should the test fail, a worker retrying for ever must not keep pytest from exiting.
    thread = threading.Thread(target=worker.run, kwargs={"max_jobs": 1}, daemon=True)
    try:
        job_id = q.add_job({"count": 1})
        thread.start()
        assert running.wait(LIVENESS_S)
        server.stop()  # a clean shutdown writes the append-only file
        may_finish.set()
        # The worker tries, fails and keeps the outcome.
        wait_for(lambda: any("cannot complete 1 jobs, retrying" in record.getMessage()
                             for record in caplog.records), "the worker to try to report the completion")
        assert thread.is_alive() and worker.stats.completed == 0
        server.start()
        thread.join(LIVENESS_S)
        assert not thread.is_alive()
        assert worker.stats.completed == 1
        assert q.get_job_status(job_id) == "completed"
        assert q.get_processing_count() == 0
    finally:
        may_finish.set()
        thread.join(LIVENESS_S)
        q.close()
        server.stop()


def _start_cli_worker(redis_url: str, prefix: str, handler: str, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")]))
    return subprocess.Popen(
        [sys.executable, "-m", "botrix_toolkit.cli", "worker", handler,
         "--redis-url", redis_url, "--prefix", prefix, *extra],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _sigterm_once_holding(process: subprocess.Popen, queue: QueueService, job_id: str,
                          sigterms: int) -> tuple[str, str]:
    """Sends SIGTERM ``sigterms`` times once the worker holds the job; its stdout and stderr.

    Each signal after the first is sent once the worker has logged the one
    before: two signals that arrive before Python runs the handler are one.
    """
    stderr_lines: list[str] = []

    def read_stderr() -> None:
        for line in process.stderr:
            stderr_lines.append(line)

    reader = threading.Thread(target=read_stderr, daemon=True)
    try:
        wait_for(lambda: queue.is_job_processing(job_id), f"the worker to claim {job_id}", process=process)
        reader.start()
        for number in range(1, sigterms + 1):
            process.send_signal(signal.SIGTERM)
            wait_for(lambda number=number: sum("SIGTERM" in line for line in stderr_lines) >= number,
                     f"the worker to log SIGTERM number {number}")
        process.wait(timeout=LIVENESS_S)
        reader.join(LIVENESS_S)
        return process.stdout.read(), "".join(stderr_lines)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=LIVENESS_S)
        process.stdout.close()
        process.stderr.close()


def test_sigterm_finishes_the_held_job_then_exits(queue: QueueService, redis_url: str,
                                                  key_prefix: str) -> None:
    first = queue.add_job({"count": 10, "priority": "high"})  # 1 s in handlers.slow
    second = queue.add_job({"count": 1, "priority": "low"})
    process = _start_cli_worker(redis_url, key_prefix, "handlers:slow")
    out, err = _sigterm_once_holding(process, queue, first, sigterms=1)
    assert process.returncode == 0, err
    assert queue.get_job_status(first) == "completed"
    assert json.loads(queue.get_job_result(first)) == "slept"
    # Stopped claiming: the second job is still waiting.
    assert queue.get_job_status(second) == "pending"
    assert "completed 1" in out


def test_second_sigterm_returns_the_held_job(queue: QueueService, redis_url: str,
                                             key_prefix: str) -> None:
    job_id = queue.add_job({"count": 600})  # 60 s in handlers.slow
    process = _start_cli_worker(redis_url, key_prefix, "handlers:slow")
    out, err = _sigterm_once_holding(process, queue, job_id, sigterms=2)
    assert process.returncode == 0, err
    assert queue.get_job_status(job_id) == "pending"
    assert not queue.is_job_processing(job_id)
    assert "returned 1" in out


def test_bad_handler_spec_is_an_error(redis_url: str, key_prefix: str) -> None:
    process = _start_cli_worker(redis_url, key_prefix, "handlers_missing_colon")
    _, err = process.communicate(timeout=LIVENESS_S)
    assert process.returncode == 2
    assert "package.module:function" in err


def test_a_poison_job_among_good_ones_is_failed_and_the_good_ones_completed(
        queue: QueueService, redis_url: str, key_prefix: str) -> None:
    # Written by another client: deeper than Python's json can read (json_depth.py).
    poison = queue.add_job({"id": "poison", "priority": 2})
    queue.redis.set(queue.keys.data(poison),
                    '{"id": "poison", "priority": 2, "deep": ' + "[" * 100_000 + "]" * 100_000 + "}")
    good = queue.add_jobs([{"count": i, "username": f"u{i}"} for i in range(3)])
    process = _start_cli_worker(redis_url, key_prefix, "handlers:echo", "--until-empty")
    try:
        out, err = process.communicate(timeout=LIVENESS_S)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "completed 3" in out
    assert [queue.get_job_status(job_id) for job_id in good] == ["completed"] * 3
    assert json.loads(queue.get_job_result(good[2])) == {"count": 2, "user": "u2"}
    assert queue.get_job_status(poison) == "failed"
    assert queue.get_processing_count() == 0 and queue.get_queue_length() == 0
    assert "poison" in err and "deeper than" in err  # the reason is logged


def test_the_old_module_of_worker_warns_and_gives_the_same_class() -> None:
    sys.modules.pop("botrix_toolkit.sim.worker", None)
    with pytest.warns(DeprecationWarning, match="botrix_toolkit.core.worker"):
        old = importlib.import_module("botrix_toolkit.sim.worker")
    assert old.Worker is Worker and old.RETRIES_FIELD == RETRIES_FIELD
