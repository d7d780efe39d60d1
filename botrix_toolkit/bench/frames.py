"""Pending-jobs frame build time and memory, against a raw baseline in the same run.

The baseline is what a careful analyst would write by hand: ZRANGE, chunked
MGET of data and status in a pipeline, json.loads, one DataFrame. The Go
service's way (two GETs per job) is measured on a sample for reference.
"""

from __future__ import annotations

import gc
import json
import multiprocessing
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import redis

from botrix_toolkit.core.cleanup import delete_keys_under
from botrix_toolkit.core.queue import QueueService

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
        # the raw baseline on a bytes client: members are bytes (redis-py types replies as a union)
        pipe.mget([f"{prefix}:data:{i.decode()}" for i in ids])  # type: ignore[union-attr]
        pipe.mget([f"{prefix}:status:{i.decode()}" for i in ids])  # type: ignore[union-attr]
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
        client.get(f"{prefix}:data:{job_id.decode()}")  # type: ignore[union-attr]  # bytes client, as above
        client.get(f"{prefix}:status:{job_id.decode()}")  # type: ignore[union-attr]
    return len(ids) / (time.perf_counter() - started)


def _timed(work: Callable[[], object]) -> float:
    gc.collect()
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def _rss_growth_in_child(url: str, prefix: str, reply: multiprocessing.Queue) -> None:
    from botrix_toolkit.frames import job_frames  # noqa: F401 - pandas and pyarrow loaded before the floor is read

    q = QueueService.from_url(url, prefix=prefix)
    q.pending_jobs_frame(limit=10)  # connected, every import done: what is resident now is the floor
    gc.collect()
    # The peak (VmHWM) survives fork and exec: reset it to the current size.
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    before = _status_mib("VmRSS")
    frame = q.pending_jobs_frame()
    reply.put((_status_mib("VmHWM") - before, len(frame)))


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def peak_memory_mib(url: str, prefix: str) -> float:
    """Peak resident memory that building the frame adds, measured in a fresh process.

    A spawned interpreter starts with nothing of this one's heap; its peak
    RSS (VmHWM, reset once the imports are done) also sees Arrow's buffers
    (pandas' string columns), which tracemalloc would miss.
    """
    context = multiprocessing.get_context("spawn")
    reply = context.Queue()
    child = context.Process(target=_rss_growth_in_child, args=(url, prefix, reply))
    child.start()
    growth, _rows = reply.get(timeout=600)
    child.join()
    return growth


def run_frame_benchmark(
    url: str, jobs: int = 1_000_000, progress: Callable[[int, int], None] | None = None
) -> FrameBenchmarkResult:
    """Fills a queue of its own with ``jobs`` jobs, measures, and deletes it."""
    client = redis.Redis.from_url(url)
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
            toolkit_peak_mib=peak_memory_mib(url, q.keys.prefix),
        )
    finally:
        delete_keys_under(client, f"{q.keys.prefix}:")
        client.close()
