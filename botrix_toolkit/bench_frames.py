"""Pending-jobs frame build time and memory, against a raw baseline in the same run.

The baseline is what a careful analyst would write by hand: ZRANGE, chunked
MGET of data and status in a pipeline, json.loads, one DataFrame. The Go
service's way (two GETs per job) is measured on a sample for reference.
"""

from __future__ import annotations

import gc
import json
import multiprocessing
import resource
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import redis

from .queue import QueueService

CHUNK = 10_000


@dataclass(frozen=True)
class FrameBenchmarkResult:
    jobs: int
    raw_seconds: float
    toolkit_seconds: float
    go_style_rate: float  # jobs per second, on a sample
    toolkit_peak_mib: float

    @property
    def ratio(self) -> float:
        """Toolkit time over raw time: 1.0 is as fast as the baseline, target <= 1.5."""
        return self.toolkit_seconds / self.raw_seconds


def raw_pending_frame(client: redis.Redis, prefix: str) -> pd.DataFrame:
    """The hand-written baseline: no typing, no redaction, no checks."""
    queue, rows, start = f"{prefix}:queue", [], 0
    while ids := client.zrange(queue, start, start + CHUNK - 1):
        pipe = client.pipeline(transaction=False)
        pipe.mget([f"{prefix}:data:{i.decode()}" for i in ids])
        pipe.mget([f"{prefix}:status:{i.decode()}" for i in ids])
        data, status = pipe.execute()
        for body, state in zip(data, status):
            if body is not None and state == b"pending":
                rows.append(json.loads(body))
        start += CHUNK
    return pd.DataFrame(rows)


def go_style_rate(client: redis.Redis, prefix: str, sample: int = 2000) -> float:
    """Jobs per second read as GetPendingJobs does: two GETs per job."""
    ids = client.zrange(f"{prefix}:queue", 0, sample - 1)
    started = time.perf_counter()
    for job_id in ids:
        client.get(f"{prefix}:data:{job_id.decode()}")
        client.get(f"{prefix}:status:{job_id.decode()}")
    return len(ids) / (time.perf_counter() - started)


def _timed(work: Callable[[], object]) -> float:
    gc.collect()
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def _rss_growth_in_child(client: redis.Redis, prefix: str, reply: multiprocessing.Queue) -> None:
    # A forked child may use the parent's client: redis-py's pool reconnects after a fork.
    before = _rss_mib()
    q = QueueService(client, prefix=prefix)
    frame = q.pending_jobs_frame()
    reply.put((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before, len(frame)))


def _rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def peak_memory_mib(client: redis.Redis, prefix: str) -> float:
    """Peak resident memory that building the frame adds, measured in a fresh process.

    tracemalloc would miss Arrow's buffers (pandas' string columns), so this
    reads the child's peak RSS instead.
    """
    context = multiprocessing.get_context("fork")
    reply = context.Queue()
    child = context.Process(
        target=_rss_growth_in_child,
        args=(client, prefix, reply),
    )
    child.start()
    growth, _rows = reply.get(timeout=600)
    child.join()
    return growth


def run_frame_benchmark(
    client: redis.Redis, jobs: int = 1_000_000, progress: Callable[[int, int], None] | None = None
) -> FrameBenchmarkResult:
    """Fills a queue of its own with ``jobs`` jobs, measures, and deletes it."""
    q = QueueService(client, prefix=f"botrix:bench:{uuid.uuid4().hex[:10]}")
    try:
        q.add_jobs(
            ({"priority": i % 3, "count": 1 + i % 100, "username": f"user{i % 500}",
              "password": "secret", "test_mode": i % 4 == 0} for i in range(jobs)),
            progress=progress,
        )
        raw = _timed(lambda: raw_pending_frame(client, q.keys.prefix))
        toolkit = _timed(q.pending_jobs_frame)
        return FrameBenchmarkResult(
            jobs=jobs,
            raw_seconds=raw,
            toolkit_seconds=toolkit,
            go_style_rate=go_style_rate(client, q.keys.prefix),
            toolkit_peak_mib=peak_memory_mib(client, q.keys.prefix),
        )
    finally:
        keys = list(client.scan_iter(match=f"{q.keys.prefix}:*", count=10_000))
        for start in range(0, len(keys), 10_000):
            client.unlink(*keys[start : start + 10_000])
