"""What one dashboard refresh costs on a big queue, against the bare Redis commands.

``run_dashboard_refresh_benchmark(url, jobs)`` fills a queue of its own (bulk
``add_jobs`` under a unique prefix, deleted afterwards), then times the work a
dashboard refresh does, with the dashboard's own code (botrix_toolkit.dashboard.snapshot):
stats, the first 100 pending jobs as a frame, the processing frame, the
priority figure and the table's display frame. The baseline is the bare
commands behind it: ZCARD/SCARD/ZCOUNTs, ZRANGE 0 99 and the MGETs of those
100 jobs, and SMEMBERS of processing. Run from a shell:

    python -m botrix_toolkit.bench.dashboard --jobs 1000000 [--redis-url URL]
"""

from __future__ import annotations

import argparse
import gc
import logging
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from botrix_toolkit.core.cleanup import delete_keys_under
from botrix_toolkit.core.clients import RedisClient
from botrix_toolkit.core.keys import QueueKeys
from botrix_toolkit.core.node_pipelines import queue_pipeline
from botrix_toolkit.core.queries import HIGH_SCORES, LOW_SCORES, NORMAL_SCORES
from botrix_toolkit.core.queue import QueueService
from botrix_toolkit.core.redaction import redact_url
from botrix_toolkit.server.connect import resolve_url

logger = logging.getLogger(__name__)

TARGET_MS = 300.0
# Resident memory the refreshes may add to the process, whatever the queue's size.
MEMORY_TARGET_MIB = 200.0
FILL_BATCH = 50_000  # jobs per add_jobs call: bounds the memory of the filler
HELD_JOBS = 20  # jobs put in processing, so the processing frame has rows
DELETE_BATCH = 1000


@dataclass(frozen=True)
class RefreshBenchmark:
    """Timings in milliseconds; ``ratio`` is refresh median / baseline median.

    ``stats`` is what the last refresh read (get_queue_stats), ``prefix`` the
    (deleted) key prefix the queue lived under.
    """

    jobs: int
    prefix: str
    stats: dict[str, int]
    refreshes: int
    fill_s: float
    refresh_ms: list[float]
    baseline_ms: list[float]
    # resident memory the views added at their peak, the first refresh included (Linux)
    peak_growth_mib: float = float("nan")

    @property
    def median_ms(self) -> float:
        return statistics.median(self.refresh_ms)

    @property
    def baseline_median_ms(self) -> float:
        return statistics.median(self.baseline_ms)

    @property
    def ratio(self) -> float:
        return self.median_ms / self.baseline_median_ms if self.baseline_median_ms else float("inf")

    @property
    def meets_target(self) -> bool:
        return self.median_ms < TARGET_MS

    @property
    def meets_memory_target(self) -> bool:
        return self.peak_growth_mib < MEMORY_TARGET_MIB

    def describe(self) -> str:
        return (f"{self.jobs:,} pending jobs (filled in {self.fill_s:.1f} s): dashboard refresh "
                f"median {self.median_ms:.1f} ms over {self.refreshes} "
                f"(target < {TARGET_MS:.0f} ms: {'ok' if self.meets_target else 'MISSED'}); "
                f"bare commands {self.baseline_median_ms:.2f} ms; ratio {self.ratio:.1f}x; "
                f"peak memory added {self.peak_growth_mib:.1f} MiB (target < {MEMORY_TARGET_MIB:.0f} MiB: "
                f"{'ok' if self.meets_memory_target else 'MISSED'})")


def fill_queue(q: QueueService, jobs: int, progress: Callable[[int], None] | None = None) -> None:
    """Adds ``jobs`` jobs (priorities high/normal/low mixed) in bulk batches."""
    levels = (2, 1, 1, 0)
    done = 0
    while done < jobs:
        size = min(FILL_BATCH, jobs - done)
        q.add_jobs({"priority": levels[(done + i) % 4], "count": 1, "username": f"bench{i}",
                    "password": "not-shown"} for i in range(size))
        done += size
        if progress is not None:
            progress(done)


def _baseline_refresh(client: RedisClient, keys: QueueKeys, top_n: int) -> None:
    """The bare commands behind a refresh: counts, the head of the queue, its jobs."""
    pipe = queue_pipeline(client, keys)
    pipe.zcard(keys.queue)
    pipe.scard(keys.processing)
    for low, high in (HIGH_SCORES, NORMAL_SCORES, LOW_SCORES):
        pipe.zcount(keys.queue, low, high)
    pipe.zrange(keys.queue, 0, top_n - 1, withscores=True)
    pipe.smembers(keys.processing)
    *_, head, held = pipe.execute()
    ids = [member.decode() for member, _ in head] + [member.decode() for member in held]
    pipe = queue_pipeline(client, keys)
    pipe.mget([keys.data(job_id) for job_id in ids])
    pipe.mget([keys.status(job_id) for job_id in ids])
    pipe.execute()


def run_dashboard_refresh_benchmark(
    url: str | None = None, jobs: int = 1_000_000, refreshes: int = 15, top_n: int = 100,
    progress: Callable[[int], None] | None = None,
) -> RefreshBenchmark:
    """Fill a queue of ``jobs`` jobs, time ``refreshes`` dashboard refreshes and the baseline.

    The queue lives under a fresh ``botrix:bench-dashboard:<hex>`` prefix that
    is deleted afterwards, also when the run fails.
    """
    resolved, _ = resolve_url(url)
    prefix = f"botrix:bench-dashboard:{uuid.uuid4().hex[:12]}:jobs"
    from botrix_toolkit.dashboard import snapshot  # pandas and plotly: loaded when measured

    q = QueueService.from_url(resolved, prefix=prefix, socket_timeout=120)
    try:
        started = time.perf_counter()
        fill_queue(q, jobs, progress)
        q.dequeue_jobs(min(HELD_JOBS, jobs))
        fill_s = time.perf_counter() - started

        seen: dict[str, int] = {}

        def refresh() -> None:
            snap = snapshot.take_snapshot(q, top_n)
            seen.update(snap.stats)
            snapshot.queue_figures(snap)
            snapshot.display_frame(snap.pending, snapshot.PENDING_DISPLAY)
            snapshot.display_frame(snap.processing, snapshot.PROCESSING_DISPLAY)
            snap.stalled(snapshot.DEFAULT_STALL_TIMEOUT_S)

        # From here on, what the views hold at their peak counts, the first
        # refresh's allocations included: that is what a dashboard process adds.
        floor_mib = _reset_peak_mib()
        refresh()  # warm-up: script loads, connection
        _baseline_refresh(q.redis, q.keys, top_n)
        refresh_ms, baseline_ms = [], []
        for _ in range(refreshes):
            refresh_ms.append(_elapsed_ms(refresh))
            baseline_ms.append(_elapsed_ms(lambda: _baseline_refresh(q.redis, q.keys, top_n)))
        # The kernel folds each thread's RSS counts in lazily, so two readings can
        # disagree by a few pages either way; a growth below zero is that lag.
        peak_growth = _status_mib("VmHWM") - floor_mib
        if peak_growth < 0:
            peak_growth = 0.0
        return RefreshBenchmark(jobs, prefix, dict(seen), refreshes, fill_s, refresh_ms,
                                baseline_ms, peak_growth)
    finally:
        removed = delete_keys_under(q.redis, prefix, batch_size=DELETE_BATCH)
        logger.info("deleted %d benchmark keys under %s", removed, prefix)
        q.close()


def _status_mib(field: str) -> float:
    """A size from /proc/self/status in MiB; NaN where there is none (not Linux)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _reset_peak_mib() -> float:
    """Resets the peak resident size (VmHWM) to the current one, and returns the new peak.

    The peak itself, not VmRSS read a moment later: another thread may grow and
    shrink the process in between.
    """
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return float("nan")
    return _status_mib("VmHWM")


def _elapsed_ms(work: Callable[[], None]) -> float:
    started = time.perf_counter()
    work()
    return (time.perf_counter() - started) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", default=None,
                        help="server (default: $BOTRIX_REDIS_URL, else the embedded one)")
    parser.add_argument("--jobs", type=int, default=1_000_000, help="queue size to fill")
    parser.add_argument("--refreshes", type=int, default=15, help="refreshes to time")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    url, embedded = resolve_url(args.redis_url)
    print(f"server {redact_url(url)}{' (embedded)' if embedded else ''}; filling {args.jobs:,}",
          flush=True)
    result = run_dashboard_refresh_benchmark(
        url, args.jobs, args.refreshes,
        progress=lambda done: print(f"  {done:,} added", end="\r", flush=True))
    print()
    print(result.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
