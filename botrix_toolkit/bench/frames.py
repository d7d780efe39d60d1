"""Pending-jobs frame build time and memory, against a lean raw read in the same run.

The baseline is the leanest read a careful analyst would write by hand:
ZRANGE, MGET of 10,000 data and status keys in one pipeline, ``orjson.loads``
per value, ``DataFrame.from_records`` and ``to_datetime`` of the two times
(no typing of the other fields, no redaction, no checks). Each is run twice,
alternately; the ratio is best over best, and each round's own ratio gives the
range. The Go service's way (two GETs per job) is measured on a sample.
"""

from __future__ import annotations

import gc
import multiprocessing
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import orjson
import pandas as pd
import redis

from botrix_toolkit.core.cleanup import delete_keys_under
from botrix_toolkit.core.errors import OperationError
from botrix_toolkit.core.queue import QueueService

CHUNK = 10_000


#: pending_jobs_frame's time over the lean raw read's, best of the rounds each.
TARGET_RATIO = 0.6
ROUNDS = 2


@dataclass(frozen=True)
class FrameBenchmarkResult:
    jobs: int
    raw_seconds: tuple[float, ...]  # the lean raw read, per round
    toolkit_seconds: tuple[float, ...]  # pending_jobs_frame, per round
    go_style_rate: float  # jobs per second, on a sample
    toolkit_peak_mib: float

    @property
    def ratio(self) -> float:
        """Best toolkit time over best raw time: 1.0 is as fast as the baseline."""
        return min(self.toolkit_seconds) / min(self.raw_seconds)

    @property
    def round_ratios(self) -> tuple[float, ...]:
        return tuple(t / r for t, r in zip(self.toolkit_seconds, self.raw_seconds))

    @property
    def meets_target(self) -> bool:
        return self.ratio <= TARGET_RATIO


def raw_pending_frame(client: redis.Redis, prefix: str) -> pd.DataFrame:
    """The lean hand-written read: no typing beyond the two times, no redaction, no checks."""
    queue, rows, start = f"{prefix}:queue", [], 0
    while ids := client.zrange(queue, start, start + CHUNK - 1):
        pipe = client.pipeline(transaction=False)
        # the raw baseline on a bytes client: members are bytes (redis-py types replies as a union)
        pipe.mget([f"{prefix}:data:{i.decode()}" for i in ids])  # type: ignore[union-attr]
        pipe.mget([f"{prefix}:status:{i.decode()}" for i in ids])  # type: ignore[union-attr]
        data, status = pipe.execute()
        for body, state in zip(data, status):
            if body is not None and state == b"pending":
                rows.append(orjson.loads(body))
        start += CHUNK
    frame = pd.DataFrame.from_records(rows)
    for name in ("created_at", "updated_at"):
        frame[name] = pd.to_datetime(frame[name], utc=True, format="ISO8601")
    return frame


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
    raise OperationError(f"no {field} in /proc/self/status")


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
    url: str, jobs: int = 1_000_000, progress: Callable[[int, int], None] | None = None, rounds: int = ROUNDS
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
        raw: list[float] = []
        toolkit: list[float] = []
        for round_number in range(rounds):
            # alternate which goes first, so a drift of the machine moves both alike
            pair = [("raw", lambda: raw_pending_frame(client, q.keys.prefix)), ("toolkit", q.pending_jobs_frame)]
            for name, work in pair if round_number % 2 == 0 else reversed(pair):
                (raw if name == "raw" else toolkit).append(_timed(work))
        return FrameBenchmarkResult(
            jobs=jobs,
            raw_seconds=tuple(raw),
            toolkit_seconds=tuple(toolkit),
            go_style_rate=go_style_rate(client, q.keys.prefix),
            toolkit_peak_mib=peak_memory_mib(url, q.keys.prefix),
        )
    finally:
        delete_keys_under(client, f"{q.keys.prefix}:")
        client.close()
