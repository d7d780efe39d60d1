"""What a simulation's coordinator and its child processes share, and the children's entry points.

The children are started with ``spawn`` (simulation.py says why), so each
imports the module of its entry point afresh: this one needs neither pandas
nor the recorder, and a worker process starts in a fraction of the time it
would take importing the coordinator's module.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import sys
import threading
import time
from typing import Any

from botrix_toolkit.core.cluster_routing import node_client
from botrix_toolkit.core.errors import AccessDeniedError, ServerConnectionError
from botrix_toolkit.core.models import Job
from botrix_toolkit.core.queue import QueueService
from botrix_toolkit.core.worker import Worker
from botrix_toolkit.sim.scenarios import JobFactory, Scenario, service_time

logger = logging.getLogger(__name__)

# Shared counter slots: per process a row of these, written only by that process.
COUNTERS = ("added", "claimed", "completed", "failed", "requeued")
_PRODUCER_TICK_S = 0.02
_MAX_ADD_PER_TICK = 5000


class SharedFlag:
    """A cross-process flag in shared memory, without a lock.

    multiprocessing.Event holds a semaphore while it is read or waited on; a
    worker SIGKILLed at that instant leaves it locked for ever and every other
    process hangs on it. One byte written by one side and polled by the other
    cannot be left locked.
    """

    def __init__(self, array: Any, index: int) -> None:
        self.array, self.index = array, index

    def set(self) -> None:
        self.array[self.index] = 1

    def is_set(self) -> bool:
        return bool(self.array[self.index])

    def wait(self, timeout: float, poll: float = 0.02) -> bool:
        deadline = time.monotonic() + timeout
        while not self.is_set():
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll)
        return True


class SimulatedFailure(RuntimeError):
    """What a simulated job raises when its attempt is drawn to fail."""


def child_setup(log_level: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator decides when to stop
    logging.basicConfig(level=log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s")
    # Simulated failures are expected: one warning per retry would drown the display.
    if log_level > logging.DEBUG:
        logging.getLogger("botrix_toolkit.core.worker").setLevel(logging.ERROR)


def producer_main(url: str, prefix: str, scenario: Scenario, run_tag: str, seed: int,
                   counters: Any, go: Any, stop: Any, log_level: int) -> None:
    """Adds jobs at ``scenario.rate_at(t)`` until the duration or job count is reached."""
    child_setup(log_level)
    q = QueueService.from_url(url, prefix=prefix)
    factory = JobFactory(scenario, run_tag, random.Random(seed))
    parent = os.getppid()
    while not go.wait(1.0):
        if stop.is_set() or os.getppid() != parent:
            return
    start = last = time.monotonic()
    due = 0.0
    limit = scenario.jobs if scenario.jobs is not None else float("inf")
    while not stop.is_set() and factory.made < limit and os.getppid() == parent:
        now = time.monotonic()
        elapsed = now - start
        if scenario.duration_s is not None and elapsed >= scenario.duration_s:
            break
        due += scenario.rate_at(elapsed) * (now - last)
        last = now
        n = int(min(due, limit) - factory.made)
        if n > 0:
            batch = factory.make(min(n, _MAX_ADD_PER_TICK))
            if not add_until_sent(q, batch, stop, parent):
                factory.made -= len(batch)  # never acknowledged: not counted as added
                break
            counters[0] = factory.made
        time.sleep(max(0.0, _PRODUCER_TICK_S - (time.monotonic() - now)))
    counters[0] = factory.made
    q.close()


def add_until_sent(q: QueueService, batch: list[dict[str, Any]], stop: Any, parent: int) -> bool:
    """Adds ``batch``, sending it again while the server stays unreachable (past the
    reconnect window); False when the run stopped first (the batch counts as not added).

    The same ids are sent: a job an unacknowledged attempt did write is
    written again as the same pending job, so none is added twice.
    """
    while True:
        try:
            q.add_jobs(batch)
            return True
        except AccessDeniedError:
            raise
        except ServerConnectionError as exc:
            logger.warning("producer: cannot add %d jobs, sending them again: %s", len(batch), exc)
            if stop.wait(1.0) or os.getppid() != parent:
                return False


def worker_main(url: str, prefix: str, scenario: Scenario, seed: int, slot: int,
                 counters: Any, ready: Any, stop: Any, crash: Any, log_level: int) -> None:
    """One worker process: a Worker whose handler simulates work, failures and a crash."""
    child_setup(log_level)
    q = QueueService.from_url(url, prefix=prefix)
    rng = random.Random(seed)
    rng_lock = threading.Lock()

    def simulated_work(job: Job) -> None:
        if crash.is_set():
            # Killed mid-job: the jobs held stay in processing until recovered.
            os.kill(os.getpid(), signal.SIGKILL)
        with rng_lock:
            seconds = service_time(scenario, job.count, rng)
            fails = rng.random() < scenario.failure_rate
        time.sleep(seconds)
        if fails:
            raise SimulatedFailure("simulated failure")

    worker = Worker(q, simulated_work, concurrency=scenario.concurrency,
                    lease_s=scenario.stall_timeout_s, batch=scenario.batch,
                    max_retries=scenario.max_retries, poll_interval=0.02)
    base = slot * len(COUNTERS)

    parent = os.getppid()

    def report() -> None:
        while True:
            # An orphan (coordinator killed) stops too, instead of working for ever.
            stopping = stop.wait(0.1) or os.getppid() != parent
            s = worker.stats
            counters[base + 1], counters[base + 2] = s.claimed, s.completed
            counters[base + 3], counters[base + 4] = s.failed, s.requeued
            if stopping:
                worker.stop()
                return

    threading.Thread(target=report, daemon=True).start()
    ready.set()
    worker.run()
    s = worker.stats
    counters[base + 1], counters[base + 2] = s.claimed, s.completed
    counters[base + 3], counters[base + 4] = s.failed, s.requeued
    q.close()


def as_queue(q_or_url: QueueService | str | None, prefix: str | None) -> tuple[QueueService, bool]:
    from botrix_toolkit.server.connect import connect

    if isinstance(q_or_url, QueueService):
        if prefix is not None and prefix != q_or_url.keys.prefix:
            return QueueService(q_or_url.redis, prefix=prefix, ttl=q_or_url.ttl,
                                url=q_or_url.url), False
        return q_or_url, False
    kwargs = {"prefix": prefix} if prefix else {}
    return connect(q_or_url, **kwargs), True


def process_url(q: QueueService) -> str:
    """The URL child processes connect to (with its password: ``q.url`` has it removed)."""
    # On a cluster, a node's URL: the children's from_url detects the cluster.
    pool = node_client(q.redis).connection_pool
    kwargs = pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
    auth = ""
    if kwargs.get("password"):
        from urllib.parse import quote

        auth = f"{quote(kwargs.get('username') or '')}:{quote(kwargs['password'])}@"
    connection_class = pool.connection_class.__name__
    scheme = "rediss" if kwargs.get("ssl") or "SSL" in connection_class else "redis"
    return f"{scheme}://{auth}{kwargs.get('host', '127.0.0.1')}:{kwargs.get('port', 6379)}/" \
           f"{kwargs.get('db', 0)}"
