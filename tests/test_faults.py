"""Faults: a server killed and restarted mid-work, workers killed at random, servers that hang.

Each test runs its own server in a temporary directory (the session's shared
server is never killed or stopped). The recorder's reconnection after CLIENT
KILL is tested in test_events.py::test_reconnects_after_client_kill_and_reports_the_gap.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import random
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from botrix_toolkit import QueueService, ServerConnectionError, ServerTimeoutError
from botrix_toolkit.core.worker import Worker
from botrix_toolkit.frames.events import EventRecorder
from botrix_toolkit.server.embedded import EmbeddedServer
from botrix_toolkit.server.ports import free_port
from tests.aof import fsync_always
from tests.waiting import wait_for

PREFIX = "faults:jobs"


def crash_and_restart(server: EmbeddedServer) -> None:
    """SIGKILL (no shutdown, no final flush), then start again on the same port from the AOF."""
    pid = server.status()["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not server.status()["running"], "the killed server to be gone")
    fsync_always(server.start())


def statuses(q: QueueService, ids: list[str]) -> Counter[bytes | None]:
    return Counter(q.redis.mget([q.keys.status(i) for i in ids]))


# -- durability ---------------------------------------------------------------------

def test_acknowledged_adds_survive_sigkill_with_appendfsync_always(aof_server: EmbeddedServer) -> None:
    q = QueueService.from_url(aof_server.url, prefix=PREFIX)
    try:
        ids = [q.add_job({"id": f"kept-{i:03d}"}) for i in range(200)]
        taken = q.dequeue_jobs(10)
        crash_and_restart(aof_server)
        # the same client reconnects by itself
        assert q.get_queue_length() == 190
        assert q.get_processing_count() == 10
        assert statuses(q, ids) == Counter({b"pending": 190, b"running": 10})
        assert sorted(q.recover_stalled(0)) == sorted(job.id for job in taken)
    finally:
        q.close()


@pytest.mark.slow
def test_server_restart_mid_work_loses_no_job(aof_server: EmbeddedServer) -> None:
    q = QueueService.from_url(aof_server.url, prefix=PREFIX)
    ids = q.add_jobs({"id": f"job-{i:04d}", "priority": i % 3} for i in range(1500))
    recorder = EventRecorder(q).start()
    errors: list[BaseException] = []
    services = [QueueService.from_url(aof_server.url, prefix=PREFIX) for _ in range(2)]
    workers = [Worker(s, lambda job: time.sleep(0.002), concurrency=2, batch=10, lease_s=2)
               for s in services]

    def run(worker: Worker) -> None:
        try:
            worker.run(until_empty=True)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,), daemon=True) for w in workers]
    try:
        for thread in threads:
            thread.start()
        wait_for(lambda: statuses(q, ids)[b"completed"] >= 300, "300 completions before the crash")
        assert q.get_queue_length() > 0, "the crash must come while there is work left"
        crash_and_restart(aof_server)
        restarted_ns = time.time_ns()
        for thread in threads:
            thread.join(120)
        assert not any(thread.is_alive() for thread in threads)
        assert errors == [], f"a worker died on the restart: {errors!r}"
        # a claim whose reply was lost in the crash left jobs held by nobody
        q.recover_stalled(0)
        Worker(q, lambda job: None, batch=50).run(until_empty=True)
        assert statuses(q, ids) == Counter({b"completed": 1500})
        assert q.get_queue_length() == 0 and q.get_processing_count() == 0
        wait_for(lambda: recorder.frame()["received_at"].max().value > restarted_ns,
                 "events recorded after the restart")
        assert recorder.running
        gaps = recorder.gaps()
        assert len(gaps) >= 1, "the recorder must report the time it was disconnected"
        assert gaps["end"].notna().all(), "the recorder reconnected"
    finally:
        recorder.stop()
        for service in services:
            service.close()
        q.close()


# -- workers killed at random ---------------------------------------------------------

def _work_forever(url: str, prefix: str) -> None:
    """A worker process: 10 ms per job, 1 s leases, until it is killed."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    q = QueueService.from_url(url, prefix=prefix)
    Worker(q, lambda job: time.sleep(0.01), concurrency=2, batch=4, lease_s=1.0).run()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_workers_sigkilled_at_random_complete_every_job_exactly_once(
    redis_url: str, key_prefix: str, queue: QueueService
) -> None:
    total = 2500
    ids = queue.add_jobs({"id": f"r-{i:05d}", "priority": i % 3} for i in range(total))
    recorder = EventRecorder(queue).start()
    context = multiprocessing.get_context("spawn")
    rng = random.Random(7)

    def start_worker() -> multiprocessing.process.BaseProcess:
        process = context.Process(target=_work_forever, args=(redis_url, key_prefix), daemon=True)
        process.start()
        return process

    workers = [start_worker() for _ in range(3)]
    kills = 0
    deadline = time.monotonic() + 30  # the run is bounded whatever the machine's speed
    try:
        next_kill = time.monotonic() + rng.uniform(1.0, 2.0)
        while time.monotonic() < deadline and statuses(queue, ids)[b"completed"] < total:
            queue.recover_stalled(timeout_s=3.0)  # 3 lease renewals missed: the holder is dead
            if time.monotonic() >= next_kill and queue.get_queue_length() > 0:
                victim = workers.pop(rng.randrange(len(workers)))
                os.kill(victim.pid, signal.SIGKILL)
                victim.join(10)
                kills += 1
                workers.append(start_worker())
                next_kill = time.monotonic() + rng.uniform(0.5, 2.0)
            time.sleep(0.2)
    finally:
        for process in workers:
            os.kill(process.pid, signal.SIGKILL)
            process.join(10)
    assert kills >= 3, "the run must kill workers while there is work"
    # Whatever the deadline left unfinished is recovered and finished here.
    queue.recover_stalled(timeout_s=0)
    Worker(queue, lambda job: None, batch=50).run(until_empty=True)

    assert statuses(queue, ids) == Counter({b"completed": total})
    assert queue.get_queue_length() == 0 and queue.get_processing_count() == 0
    wait_for(lambda: (recorder.frame()["event"] == "job_completed").sum() >= total,
             "every job_completed event")
    recorder.stop()
    assert recorder.gaps().empty, "the counts below are only exact without a gap"
    completed = recorder.frame().query("event == 'job_completed'")["job_id"]
    per_id = Counter(completed)
    assert set(per_id) == set(ids)
    assert max(per_id.values()) == 1, [i for i, n in per_id.items() if n > 1][:5]


# -- servers that stop answering --------------------------------------------------------

@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    server = EmbeddedServer(data_dir=tmp_path / "own", port=free_port())
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError, TypeError):
            os.kill(server.status()["pid"] or -1, signal.SIGCONT)
        server.stop()


@contextlib.contextmanager
def stopped(pid: int) -> Iterator[None]:
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def timed(call: Callable[[], object]) -> tuple[BaseException | None, float]:
    start = time.monotonic()
    try:
        call()
    except Exception as exc:
        return exc, time.monotonic() - start
    return None, time.monotonic() - start


@pytest.mark.timeout(60)
def test_a_stopped_server_makes_operations_time_out_not_hang(own_server: EmbeddedServer) -> None:
    url = own_server.url
    q = QueueService.from_url(url, prefix=PREFIX, socket_timeout=0.5)
    try:
        q.add_job({"id": "before"})
        with stopped(own_server.status()["pid"]):
            for operation in (q.get_queue_length, q.dequeue_job, lambda: q.add_job({"id": "x"}),
                              q.get_queue_stats, q.pending_jobs_frame):
                error, elapsed = timed(operation)
                assert isinstance(error, ServerTimeoutError), error
                assert "did not answer in time" in str(error) and url in str(error)
                # one socket timeout, not one per retry (generous bound: shared machine)
                assert elapsed < 5, elapsed
            assert q.health() is False
        # once the server runs again, the same service works
        assert q.get_queue_length() >= 1
    finally:
        q.close()


class SilentServer:
    """A TCP server on loopback that accepts connections and never answers."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                self.connections.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.connections:
            conn.close()


@pytest.mark.timeout(60)
def test_a_server_that_never_answers_fails_within_the_timeout() -> None:
    silent = SilentServer()
    url = f"redis://:s3cret-pass@127.0.0.1:{silent.port}/0"
    try:
        error, elapsed = timed(lambda: QueueService.from_url(url, socket_timeout=0.5))
        assert error is None, "building the service does not need an answer"
        q = QueueService.from_url(url, socket_timeout=0.5, cluster=False)
        for operation in (q.get_queue_length, q.dequeue_job):
            error, elapsed = timed(operation)
            assert isinstance(error, ServerTimeoutError), error
            assert isinstance(error, ServerConnectionError) and isinstance(error, TimeoutError)
            assert "s3cret-pass" not in str(error) and "s3cret-pass" not in repr(q)
            assert elapsed < 5, elapsed
        error, _ = timed(lambda: EventRecorder(q).start())
        assert isinstance(error, ServerConnectionError), error
        assert "s3cret-pass" not in str(error)
        q.close()
    finally:
        silent.close()
