"""The dashboard's range view (frames/history_view.py) on histories written by the monitor's own code.

Counts read from the per-minute rollups agree with the raw events they were
made from; a range whose newest minutes come from the live recorder counts
every event once; long ranges never open raw events nor partitions outside
the range; a folder the page cannot use is one line, never an exception.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pandas.testing as pdt
import pytest

from botrix_toolkit.bench.history_view import run_history_view_benchmark
from botrix_toolkit.core.errors import InvalidInputError
from botrix_toolkit.core.queue import QueueService
from botrix_toolkit.frames import analysis, history_view
from botrix_toolkit.frames.dataset_layout import partition_dir, state_path
from botrix_toolkit.monitor.service import MonitorService
from tests import waiting
from tests.history_data import SECRET, History, write_history

PREFIX = "botrix:hist/ä"  # escaped in the folder names


@pytest.fixture(autouse=True)
def fresh_rollup_cache() -> None:
    history_view.ROLLUP_FILES.clear()


def recent_history(tmp_path: Path, now: pd.Timestamp, minutes: int = 90) -> History:
    """A job a minute over the last ``minutes`` minutes, with a monitor still recording."""
    return write_history(tmp_path / "history", PREFIX, now - pd.Timedelta(minutes=minutes), minutes,
                         pd.Timedelta(minutes=1), covered_until=now)


def test_counts_per_minute_from_the_rollups_equal_the_counts_of_the_raw_events(tmp_path: Path) -> None:
    first = pd.Timestamp("2026-11-26T21:13:07Z")
    history = write_history(tmp_path / "history", PREFIX, first, 700, pd.Timedelta(minutes=6, seconds=11),
                            flush_every=400)
    last = pd.Timestamp(history.received_ns[-1], unit="ns", tz="UTC")
    whole = (first.floor("min"), last.ceil("min") + pd.Timedelta(minutes=1))
    across_midnight = (pd.Timestamp("2026-11-27T20:00Z"), pd.Timestamp("2026-11-28T03:30Z"))
    for start, end in (whole, across_midnight):
        from_rollups = history_view.event_counts(history.folder, PREFIX, start, end, "rollups")
        from_events = history_view.event_counts(history.folder, PREFIX, start, end, "events")
        pdt.assert_frame_equal(from_rollups, from_events)
        assert int(from_rollups["job_completed"].sum()) == history.count("job_completed", start, end) > 0
    assert int(from_rollups.loc[:, "job_added"].sum()) < 700  # the second range is a part of the history


def test_a_range_across_stored_and_live_minutes_counts_every_event_once(tmp_path: Path) -> None:
    now = pd.Timestamp("2026-11-29T12:00:30Z")
    history = recent_history(tmp_path, now)
    live = history.events_frame()  # the recorder holds everything since before the split
    live_since = now - pd.Timedelta(minutes=37, seconds=13)
    for label, completed in (("1 hour", "completed"), ("24 hours", "job_completed")):
        start, end = history_view.range_bounds(label, now)
        mixed = history_view.activity_range(history.folder, PREFIX, start, end, live, live_since)
        stored = history_view.activity_range(history.folder, PREFIX, start, end)
        only_live = history_view.activity_range(None, PREFIX, start, end, live, start)
        assert mixed.stored_rows > 0 and mixed.live_rows > 0, label
        assert start < mixed.split < end
        pdt.assert_frame_equal(mixed.throughput, stored.throughput)
        pdt.assert_frame_equal(mixed.throughput, only_live.throughput)
        window = live[(live["received_at"] >= start) & (live["received_at"] < end)]
        expected = int(analysis.throughput(window)["completed"].sum()) if completed == "completed" \
            else history.count("job_completed", start, end)
        assert int(mixed.throughput[completed].sum()) == expected > 0
    # With a monitor recording, long ranges take its closed minutes and only the newest from the recorder.
    start, end = history_view.range_bounds("24 hours", now)
    monitored = history_view.activity_range(history.folder, PREFIX, start, end, live, live_since,
                                            stored_until=now - pd.Timedelta(seconds=45))
    assert monitored.split == pd.Timestamp("2026-11-29T11:59Z") and 0 < monitored.live_rows < mixed.live_rows
    pdt.assert_frame_equal(monitored.throughput, mixed.throughput)


def test_live_minutes_and_stored_rollups_give_the_same_latency(tmp_path: Path) -> None:
    now = pd.Timestamp("2026-11-29T12:00:30Z")
    history = recent_history(tmp_path, now, minutes=120)
    start, end = history_view.range_bounds("24 hours", now)
    stored = history_view.activity_range(history.folder, PREFIX, start, end)
    live = history_view.activity_range(None, PREFIX, start, end, history.events_frame(), start)
    assert stored.source == live.source == "rollups"
    assert len(stored.latency) > 0 and set(stored.latency["kind"]) == {"wait", "run"}
    pdt.assert_frame_equal(stored.latency, live.latency)


def test_each_range_reads_its_source_and_bins(tmp_path: Path) -> None:
    now = pd.Timestamp("2026-11-29T12:00:30Z")
    history = recent_history(tmp_path, now)
    expected = {"5 minutes": ("events", "1s"), "1 hour": ("events", "5s"),
                "24 hours": ("rollups", "1min"), "7 days": ("rollups", "10min")}
    for label, (source, step) in expected.items():
        view = history_view.activity_range(history.folder, PREFIX, *history_view.range_bounds(label, now))
        assert (view.source, view.bin) == (source, pd.Timedelta(step)), label
        assert len(view.throughput) <= history_view.MAX_POINTS + 1
        figures = history_view.activity_range_figures(view)
        assert set(figures) == {"throughput", "wait", "run"}
        assert all(SECRET not in figure.to_json() for figure in figures.values())
    # A busy queue's hour is read from its rollups, not from its raw rows.
    busy = history_view.activity_range(history.folder, PREFIX, *history_view.range_bounds("1 hour", now),
                                       max_raw_events=100)
    assert (busy.source, busy.bin) == ("rollups", pd.Timedelta("1min"))


def test_long_ranges_open_neither_raw_events_nor_partitions_outside_the_range(tmp_path: Path) -> None:
    now = pd.Timestamp("2026-11-29T12:00:30Z")
    history = recent_history(tmp_path, now)
    # Unreadable files where a 7-day view must not look: raw events of its range, rollups of 9 days ago.
    raw_hour = partition_dir(history.folder, "events", PREFIX, "2026-11-29", 11)
    (raw_hour / "part-00000000000000000-broken.parquet").write_bytes(b"not parquet")
    old_day = partition_dir(history.folder, "rollup_counts", PREFIX, "2026-11-20", None)
    old_day.mkdir(parents=True)
    (old_day / "part-00000000000000000-broken.parquet").write_bytes(b"not parquet")

    week = history_view.activity_range(history.folder, PREFIX, *history_view.range_bounds("7 days", now))
    week_ago = now - pd.Timedelta(days=7)
    assert int(week.throughput["job_completed"].sum()) == history.count("job_completed", week_ago, now)

    for start, end in ((now - pd.Timedelta(hours=1), now), (now - pd.Timedelta(days=10), now)):
        with pytest.raises(InvalidInputError, match="cannot read the history folder"):
            history_view.activity_range(history.folder, PREFIX, start, end)


def test_the_status_line_says_whether_a_monitor_is_recording(tmp_path: Path) -> None:
    now = pd.Timestamp("2026-11-29T12:00:30Z")
    history = recent_history(tmp_path, now)
    recording = history_view.history_status(history.folder, PREFIX, now + pd.Timedelta(seconds=5))
    assert (recording.usable, recording.recording) == (True, True)
    stale = history_view.history_status(history.folder, PREFIX, now + pd.Timedelta(hours=3))
    assert (stale.usable, stale.recording) == (True, False)
    assert "No monitor is recording" in stale.message and "3.0 h ago" in stale.message
    state_path(history.folder, PREFIX).unlink()  # no state: the newest event on disk says
    assert history_view.history_status(history.folder, PREFIX, now).covered_until is not None

    lines = {
        "none": history_view.history_status(None, PREFIX, now),
        "missing": history_view.history_status(tmp_path / "nowhere", PREFIX, now),
        "not a history": history_view.history_status(tmp_path, PREFIX, now),
        "other queue": history_view.history_status(history.folder, "other", now),
    }
    (history.folder / "_state" / "broken.json").write_text("{not json")
    lines["unreadable state"] = history_view.history_status(history.folder, "broken", now)
    for case, status in lines.items():
        assert not status.usable and not status.recording, case
        assert "\n" not in status.message and len(status.message) < 300, case
    assert "No history folder given" in lines["none"].message
    assert "does not exist" in lines["missing"].message
    assert "is not a botrix monitor history" in lines["not a history"].message
    assert "No monitor has recorded queue 'other'" in lines["other queue"].message


def test_a_backwards_range_is_refused_naming_it(tmp_path: Path) -> None:
    now = pd.Timestamp("2026-11-29T12:00:30Z")
    with pytest.raises(InvalidInputError, match="must end after it starts"):
        history_view.activity_range(None, PREFIX, now, now - pd.Timedelta(minutes=1))
    with pytest.raises(InvalidInputError, match="range must be one of"):
        history_view.range_bounds("3 weeks", now)


def test_a_real_monitor_run_is_counted_once_by_short_and_long_ranges(
        redis_url: str, queue: QueueService, key_prefix: str, tmp_path: Path) -> None:
    folder = tmp_path / "history"
    with MonitorService(redis_url, [key_prefix], folder, flush_s=0.2):
        ids = queue.add_jobs([{"priority": p % 3} for p in range(30)])
        claimed = queue.dequeue_jobs(30)
        assert queue.complete_jobs([job.id for job in claimed]) and len(ids) == 30
        stopped = time.time_ns()
        waiting.wait_for(lambda: history_view.history_status(folder, key_prefix, pd.Timestamp.now(tz="UTC"))
                         .covered_until.value > stopped + 200_000_000, "a flush after the traffic", timeout=30)
    now = pd.Timestamp.now(tz="UTC")
    assert history_view.history_status(folder, key_prefix, now).recording
    short = history_view.activity_range(folder, key_prefix, *history_view.range_bounds("5 minutes", now))
    long = history_view.activity_range(folder, key_prefix, *history_view.range_bounds("24 hours", now))
    assert (int(short.throughput["added"].sum()), int(short.throughput["completed"].sum())) == (30, 30)
    assert (int(long.throughput["job_added"].sum()), int(long.throughput["job_completed"].sum())) == (30, 30)
    waits = long.latency[long.latency["kind"] == "wait"]
    assert int(waits["count"].sum()) == 30


def test_the_benchmark_builds_a_week_the_view_counts_in_full(tmp_path: Path) -> None:
    result = run_history_view_benchmark(events=60_000, runs=2, folder=tmp_path / "bench",
                                        now=pd.Timestamp("2026-11-29T00:20Z"))
    assert result.events == result.view_events
    assert 0 < result.raw_events < result.events and result.rollup_rows > 0
    assert len(result.data_ms) == 2 and len(result.figures_ms) == 2
    assert result.files == len(list((tmp_path / "bench").rglob("*.parquet"))) > 8
    assert result.median_ms == result.data_ms[1] and result.cold_ms == result.data_ms[0]
