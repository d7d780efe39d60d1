"""The dashboard refresh benchmark helper, on a small queue (no timing assertions)."""

from __future__ import annotations

import redis

from botrix_toolkit.bench.dashboard import HELD_JOBS, run_dashboard_refresh_benchmark


def test_refresh_benchmark_fills_times_and_cleans_up(redis_url: str,
                                                     redis_client: redis.Redis) -> None:
    added: list[int] = []

    result = run_dashboard_refresh_benchmark(redis_url, jobs=50_000, refreshes=3,
                                             progress=added.append)

    assert added[-1] == 50_000
    assert result.stats["queue_length"] == 50_000 - HELD_JOBS
    assert result.stats["processing_count"] == HELD_JOBS
    assert (result.stats["high_priority"] + result.stats["normal_priority"]
            + result.stats["low_priority"]) == 50_000 - HELD_JOBS
    assert len(result.refresh_ms) == len(result.baseline_ms) == 3
    assert all(ms > 0 for ms in result.refresh_ms + result.baseline_ms)
    assert result.ratio > 0 and "ratio" in result.describe()
    assert result.peak_growth_mib >= 0 and "peak memory added" in result.describe()
    assert list(redis_client.scan_iter(match=f"{result.prefix}*", count=1000)) == []
