"""Many workers on one queue: every job completed exactly once, even when workers die.

Exactly-once is checked on two sides: the ids the workers got (a Counter),
and the job_completed events the server published (one per id, no more).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
import redis

from botrix_toolkit import QueueService

SENTINEL = b'{"event":"test-sentinel"}'


class CompletionCounter:
    """Counts job_completed events on the queue's channel, read in a thread."""

    def __init__(self, service: QueueService) -> None:
        self.service = service
        self.pubsub = service.redis.pubsub()
        self.pubsub.subscribe(service.keys.updates)
        confirmation = self.pubsub.get_message(timeout=10)
        assert confirmation is not None and confirmation["type"] == "subscribe"
        self.completed: Counter[str] = Counter()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            message = self.pubsub.get_message(timeout=1)
            if message is None or message["type"] != "message":
                continue
            if message["data"] == SENTINEL:
                self._done.set()
                return
            event = json.loads(message["data"])
            if event["event"] == "job_completed":
                self.completed[event["job_id"]] += 1

    def stop(self) -> Counter[str]:
        """The counts of every event published before this call."""
        self.service.redis.publish(self.service.keys.updates, SENTINEL)
        assert self._done.wait(60), "the sentinel never arrived"
        self.pubsub.close()
        return self.completed


@pytest.fixture
def completions(queue: QueueService) -> Iterator[CompletionCounter]:
    counter = CompletionCounter(queue)
    try:
        yield counter
    finally:
        if not counter._done.is_set():
            counter.pubsub.close()


def assert_all_completed_and_nothing_left(queue: QueueService, ids: list[str]) -> None:
    statuses = queue.redis.mget([queue.keys.status(i) for i in ids])
    assert Counter(statuses) == Counter({b"completed": len(ids)})
    assert queue.get_queue_length() == 0
    assert queue.get_processing_count() == 0
    assert queue.redis.zcard(queue.keys.leases) == 0


# -- threads -------------------------------------------------------------------
@pytest.mark.slow
def test_eight_threaded_workers_complete_5000_jobs_exactly_once(
    queue: QueueService, redis_url: str, key_prefix: str, completions: CompletionCounter
) -> None:
    ids = queue.add_jobs({"id": f"job-{i:05d}", "priority": i % 3} for i in range(5000))
    taken: list[list[str]] = [[] for _ in range(8)]
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(worker: int) -> None:
        # Mixed styles: single dequeue_job/complete_job and batches of up to 8.
        try:
            with QueueService.from_url(redis_url, prefix=key_prefix) as service:
                start.wait()
                while True:
                    if worker % 2 == 0:
                        job = service.dequeue_job()
                        if job is None:
                            return
                        taken[worker].append(job.id)
                        service.complete_job(job.id)
                    else:
                        jobs = service.dequeue_jobs(worker + 1)
                        if not jobs:
                            return
                        batch = [job.id for job in jobs]
                        taken[worker] += batch
                        assert service.complete_jobs(batch) == batch
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []

    got = Counter(job_id for worker in taken for job_id in worker)
    assert set(got) == set(ids)
    assert [job_id for job_id, n in got.items() if n != 1] == []
    assert sum(1 for worker in taken if worker) >= 2, "the work must really be shared"
    assert_all_completed_and_nothing_left(queue, ids)
    completed = completions.stop()
    assert completed == Counter({job_id: 1 for job_id in ids})


# -- processes killed mid-job ---------------------------------------------------
def hold_a_job_until_killed(url: str, prefix: str, finish_first: int, report: multiprocessing.Queue) -> None:
    """A worker process: completes ``finish_first`` jobs, takes one more and hangs."""
    service = QueueService.from_url(url, prefix=prefix)
    for _ in range(finish_first):
        job = service.dequeue_job()
        service.complete_job(job.id)
        report.put(("completed", job.id))
    job = service.dequeue_job()
    report.put(("holding", job.id))
    time.sleep(600)


def work_until_killed(url: str, prefix: str, report: multiprocessing.Queue) -> None:
    """A worker process that keeps taking and completing jobs until it is killed."""
    service = QueueService.from_url(url, prefix=prefix)
    while True:
        job = service.dequeue_job()
        if job is None:
            time.sleep(0.01)
            continue
        report.put(("holding", job.id))
        time.sleep(0.005)  # "working"
        service.complete_job(job.id)
        report.put(("completed", job.id))


def finish_everything(queue: QueueService) -> list[str]:
    done = []
    while (job := queue.dequeue_job()) is not None:
        queue.complete_job(job.id)
        done.append(job.id)
    return done


def kill(processes: list[multiprocessing.Process]) -> None:
    for process in processes:
        if process.pid is not None and process.is_alive():
            os.kill(process.pid, signal.SIGKILL)
    for process in processes:
        process.join(timeout=30)


@pytest.mark.slow
def test_workers_killed_while_holding_jobs_lose_nothing(
    queue: QueueService, redis_url: str, key_prefix: str, completions: CompletionCounter
) -> None:
    ids = queue.add_jobs({"id": f"crash-{i:03d}", "priority": i % 3} for i in range(40))
    context = multiprocessing.get_context("spawn")
    report = context.Queue()
    processes = [
        context.Process(target=hold_a_job_until_killed, args=(redis_url, key_prefix, n, report), daemon=True)
        for n in range(4)
    ]
    try:
        for process in processes:
            process.start()
        held, finished = [], []
        while len(held) < len(processes):
            kind, job_id = report.get(timeout=120)
            (held if kind == "holding" else finished).append(job_id)
        assert len(finished) == 0 + 1 + 2 + 3
        assert queue.get_processing_count() == 4
    finally:
        kill(processes)
    assert [process.exitcode for process in processes] == [-signal.SIGKILL] * 4
    assert [queue.get_job_status(i) for i in held] == ["running"] * 4

    assert sorted(queue.recover_stalled(timeout_s=0)) == sorted(held)
    assert queue.get_processing_count() == 0
    assert [queue.get_job_status(i) for i in held] == ["pending"] * 4
    done_by_survivor = finish_everything(queue)
    assert sorted(done_by_survivor + finished) == sorted(ids)
    assert_all_completed_and_nothing_left(queue, ids)
    assert completions.stop() == Counter({job_id: 1 for job_id in ids})


@pytest.mark.slow
def test_workers_killed_at_a_random_moment_lose_nothing(
    queue: QueueService, redis_url: str, key_prefix: str, completions: CompletionCounter
) -> None:
    ids = queue.add_jobs({"id": f"busy-{i:04d}"} for i in range(600))
    context = multiprocessing.get_context("spawn")
    report = context.Queue()
    processes = [
        context.Process(target=work_until_killed, args=(redis_url, key_prefix, report), daemon=True)
        for _ in range(3)
    ]
    try:
        for process in processes:
            process.start()
        completed_seen = 0
        while completed_seen < 60:  # killed mid-stream, once they are busy
            kind, _ = report.get(timeout=120)
            completed_seen += kind == "completed"
    finally:
        kill(processes)
    assert queue.get_queue_length() > 0, "the kill must happen before the queue is drained"

    queue.recover_stalled(timeout_s=0)
    assert queue.get_processing_count() == 0
    finish_everything(queue)
    assert_all_completed_and_nothing_left(queue, ids)
    assert completions.stop() == Counter({job_id: 1 for job_id in ids})


def test_a_reconnecting_client_sees_the_same_queue(redis_url: str, key_prefix: str, queue: QueueService) -> None:
    queue.add_job({"id": "shared"})
    with QueueService(redis.Redis.from_url(redis_url), prefix=key_prefix) as other:
        assert other.dequeue_job().id == "shared"
    assert queue.is_job_processing("shared")
