"""``botrix monitor`` as a real subprocess against real servers: every event on disk, across signals and restarts."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from rich.console import Console

from botrix_toolkit.cli.bench import monitor_cpu_table
from botrix_toolkit.core.queue import QueueService
from botrix_toolkit.frames import analysis
from botrix_toolkit.frames.dataset_layout import queue_dir, state_path
from botrix_toolkit.frames.events import EventRecorder
from botrix_toolkit.frames.history import open_dataset
from botrix_toolkit.frames.history_dataset import read_rollups
from botrix_toolkit.monitor.service import DOWNTIME_REASON, MonitorService
from botrix_toolkit.sim.simulation import run_simulation
from tests import waiting

FLUSH_S = 0.5
QUICK = {"drain_s": 60, "stats_interval_s": 0.25, "users": 20}


class Monitor:
    """A ``botrix monitor`` process; its stderr is kept in a file to read after it ends."""

    def __init__(self, url: str, prefix: str, history: Path, log: Path, *extra: str) -> None:
        self.prefix, self.history, self.log = prefix, history, log
        self._log_file = log.open("ab")
        launched = time.time_ns()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "botrix_toolkit.cli", "monitor", "--redis-url", url, "--prefix", prefix,
             "--history", str(history), "--flush-s", str(FLUSH_S), *extra],
            stdout=subprocess.DEVNULL, stderr=self._log_file,
        )
        # The state file is rewritten once every queue is subscribed.
        waiting.wait_for(lambda: (self.covered_until() or 0) > launched or self.process.poll() is not None,
                         "the monitor to subscribe", timeout=60)
        assert self.process.poll() is None, self.log.read_text()

    def covered_until(self) -> int | None:
        try:
            # Every queue's state is written once all are subscribed: the first one's tells.
            first = self.prefix.split(",")[0]
            return int(json.loads(state_path(self.history, first).read_text())["covered_until_ns"])
        except (FileNotFoundError, ValueError):
            return None

    def wait_flushed_after(self, moment_ns: int) -> None:
        waiting.wait_for(lambda: (self.covered_until() or 0) > moment_ns + int(FLUSH_S * 1e9),
                         "a flush after the traffic stopped", timeout=60)

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.process.send_signal(signum)
        code = self.process.wait(60)
        self._log_file.close()
        return code

    def kill_if_running(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)
        self._log_file.close()


@pytest.fixture
def monitors(redis_url: str, key_prefix: str, tmp_path: Path) -> Iterator[list[Monitor]]:
    started: list[Monitor] = []
    yield started
    for monitor in started:
        monitor.kill_if_running()


def start(monitors: list[Monitor], url: str, prefix: str, tmp_path: Path, *extra: str) -> Monitor:
    monitor = Monitor(url, prefix, tmp_path / "history", tmp_path / "monitor.log", *extra)
    monitors.append(monitor)
    return monitor


def simulate(queue: QueueService) -> int:
    """A short simulation on ``queue``; returns how many jobs it completed (read from Redis)."""
    result = run_simulation(queue, "steady", duration_s=1.5, rate=150, failure_rate=0.2, max_retries=1,
                            seed=7, progress=False, **QUICK)
    assert result.conservation["lost"] == 0
    assert result.conservation["completed"] > 50
    return int(result.conservation["completed"])


def completions_on_disk(history: Path, prefix: str) -> tuple[int, int]:
    """(job_completed events, completions as analysis.throughput counts them) in the history."""
    events = EventRecorder.load(history, prefix=prefix).frame()
    return int((events["event"] == "job_completed").sum()), int(analysis.throughput(events)["completed"].sum())


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_simulation_recorded_by_the_monitor_is_all_on_disk_after_sigterm(
        redis_url: str, queue: QueueService, key_prefix: str, tmp_path: Path, monitors: list[Monitor],
        signum: int) -> None:
    monitor = start(monitors, redis_url, key_prefix, tmp_path)
    completed = simulate(queue)
    assert monitor.stop(signum) == 0
    assert completions_on_disk(monitor.history, key_prefix) == (completed, completed)
    log = monitor.log.read_text()
    assert f"recording {key_prefix}" in log and str(monitor.history.resolve()) in log


@pytest.mark.slow
def test_a_sigkill_after_the_traffic_and_one_flush_loses_no_event(
        redis_url: str, queue: QueueService, key_prefix: str, tmp_path: Path, monitors: list[Monitor]) -> None:
    monitor = start(monitors, redis_url, key_prefix, tmp_path)
    completed = simulate(queue)
    monitor.wait_flushed_after(time.time_ns())
    assert monitor.stop(signal.SIGKILL) == -signal.SIGKILL
    assert completions_on_disk(monitor.history, key_prefix) == (completed, completed)


def test_a_restart_appends_and_records_the_time_it_was_down_as_a_gap(
        redis_url: str, queue: QueueService, key_prefix: str, tmp_path: Path, monitors: list[Monitor]) -> None:
    first = start(monitors, redis_url, key_prefix, tmp_path)
    before = queue.add_jobs({"priority": 1, "count": 1} for _ in range(20))
    first.wait_flushed_after(time.time_ns())
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    missed_at = pd.Timestamp.now(tz="UTC")
    missed = queue.add_jobs({"priority": 1, "count": 1} for _ in range(5))  # nobody is listening
    second = start(monitors, redis_url, key_prefix, tmp_path)
    after = queue.add_jobs({"priority": 2, "count": 1} for _ in range(30))
    assert second.stop(signal.SIGTERM) == 0

    recording = EventRecorder.load(second.history, prefix=key_prefix)
    added = set(recording.frame().query("event == 'job_added'")["job_id"])
    assert added == set(before) | set(after)
    assert not added & set(missed)
    gaps = recording.gaps()
    down = gaps[gaps["reason"] == DOWNTIME_REASON]
    assert len(down) == 1
    assert down["start"].iloc[0] < missed_at < down["end"].iloc[0]
    assert "gap in queue" in second.log.read_text()


def test_observers_see_every_event_and_health_counts_them(redis_url: str, queue: QueueService,
                                                         key_prefix: str, tmp_path: Path) -> None:
    seen: list[pd.DataFrame] = []
    service = MonitorService(redis_url, [key_prefix], tmp_path / "history", flush_s=0.2,
                             observers=[lambda prefix, frame: seen.append(frame.assign(queue=prefix))])
    with service:
        ids = queue.add_jobs({"priority": 0, "count": 1, "password": "s3cret"} for _ in range(50))
        waiting.wait_for(lambda: sum(len(f) for f in seen) >= 100, "100 events observed", timeout=60)
        health = service.health()
    observed = pd.concat(seen)
    assert set(observed["queue"]) == {key_prefix}
    assert sorted(observed.query("event == 'job_added'")["job_id"]) == sorted(ids)
    assert health["events_received"] == 100 and health["gaps"] == 0 and health["malformed"] == 0
    assert 0 <= health["flush_lag_s"] < 60
    # Passwords stay out of the files.
    assert all(b"s3cret" not in f.read_bytes() for f in (tmp_path / "history").rglob("*.parquet"))
    assert open_dataset(tmp_path / "history").count_rows() == 100


def test_bad_retention_is_refused_naming_it(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "botrix_toolkit.cli", "monitor", "--redis-url", "redis://127.0.0.1:1/0",
         "--history", str(tmp_path), "--retain", "seven days"],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "--retain 'seven days'" in result.stderr


@pytest.mark.slow
def test_the_monitor_benchmark_writes_every_event_it_was_sent(redis_url: str) -> None:
    from botrix_toolkit.bench.monitor import run_monitor_benchmark

    # Flushes every 0.1 s: several files even on a loaded machine, so compaction has files to merge.
    result = run_monitor_benchmark(redis_url, seconds=0.5, flush_s=0.1)
    assert result["sent"] > 0
    assert result["written"] == result["received"] == result["sent"] and result["lost"] == 0
    assert result["files"] >= 2
    # Merged, the flushes are at most about as large: a short flat-out run flushes few
    # large files, whose merged row group can lose a column's dictionary to its size
    # limit and come out a fraction of a percent larger (seen under load).
    assert 0 < result["compacted_bytes_per_million"] <= 1.01 * result["bytes_per_million"]
    # Where the CPU went, per event written: the threads that receive and write, and the server.
    cpu = result["cpu_us_per_event"]
    assert cpu["botrix-monitor-flush"] > 0 and cpu["botrix-event-recorder"] > 0 and cpu["server"] > 0
    assert "MainThread" not in cpu
    # As `botrix bench --only monitor` prints it: a row per thread name, a column per run.
    console = Console(width=200, record=True)
    console.print(monitor_cpu_table({"first run": result, "second run": {"cpu_us_per_event": {"server": 1.5}}}))
    rows = {cells[0]: cells[1:] for line in console.export_text().splitlines()
            if len(cells := [cell.strip() for cell in line.split("│")[1:-1]]) == 3}
    assert rows["botrix-monitor-flush"] == [f"{cpu['botrix-monitor-flush']:.2f}", "0.00"]
    assert rows["server"] == [f"{cpu['server']:.2f}", "1.50"]


@pytest.mark.slow
def test_the_monitor_benchmarks_backlog_run_writes_everything_in_one_flush(redis_url: str) -> None:
    from botrix_toolkit.bench.monitor import run_monitor_benchmark

    result = run_monitor_benchmark(redis_url, seconds=0.5, backlog=True)
    assert result["written"] == result["received"] == result["sent"] > 0 and result["lost"] == 0
    assert result["files"] <= 2  # one flush: a file per hour partition it touched
    assert result["write_rate"] > 0 and result["cpu_us_per_event"]["botrix-monitor-flush"] > 0


@pytest.mark.slow
def test_the_monitor_benchmark_with_metrics_counts_every_event_a_scrape_shows(redis_url: str) -> None:
    from botrix_toolkit.bench.monitor import run_monitor_benchmark

    result = run_monitor_benchmark(redis_url, seconds=0.5, flush_s=0.5, metrics=True)
    assert result["written"] == result["counted"] == result["sent"] > 0
    # Each job's life on the channel is five messages, the second its job_added.
    assert result["scraped_added"] == (result["sent"] + 3) // 5
    assert result["count_rate"] > 0


def test_events_whose_write_failed_are_written_by_a_later_flush(redis_url: str, queue: QueueService,
                                                                key_prefix: str, tmp_path: Path) -> None:
    history = tmp_path / "history"
    history.mkdir()
    (history / "events").write_text("a file where the events folder goes: every write fails")
    service = MonitorService(redis_url, [key_prefix], history, flush_s=0.1)
    with service:
        ids = queue.add_jobs({"priority": 1, "count": 1} for _ in range(40))
        waiting.wait_for(lambda: service.health()["events_received"] >= 80, "80 events received", timeout=60)
        time.sleep(0.5)  # a few flushes fail meanwhile
        assert service.health()["events_written"] == 0
        (history / "events").unlink()
        waiting.wait_for(lambda: service.health()["events_written"] >= 80, "the events written", timeout=60)
    added = EventRecorder.load(history, prefix=key_prefix).frame().query("event == 'job_added'")["job_id"]
    assert sorted(added) == sorted(ids)
    # The rollups were worked out beside each failed write too, but taken in once, after the one that succeeded.
    counts = read_rollups(history, "counts", prefix=key_prefix)
    assert int(counts.loc[counts["event"] == "job_added", "count"].sum()) == len(ids)


def test_a_queue_whose_writes_fail_holds_up_no_other_and_alone_shows_a_flush_lag(
        redis_url: str, key_prefix: str, tmp_path: Path) -> None:
    failing_name, fine_name = key_prefix + ":failing", key_prefix
    history = tmp_path / "history"
    blocked = queue_dir(history, "events", failing_name)
    blocked.parent.mkdir(parents=True)
    blocked.write_text("a file where the queue's events folder goes: its writes fail")
    failing = QueueService.from_url(redis_url, prefix=failing_name)
    fine = QueueService.from_url(redis_url, prefix=fine_name)
    # The failing queue first: its error must not stop the flush of the queue after it.
    service = MonitorService(redis_url, [failing_name, fine_name], history, flush_s=0.1)
    try:
        with service:
            failing_ids = failing.add_jobs({"priority": 1} for _ in range(10))
            waiting.wait_for(lambda: service.queue_health(failing_name)["last_event_age_s"] is not None,
                             "the failing queue's events drained", timeout=60)
            fine.add_jobs({"priority": 1} for _ in range(10))

            def on_disk_after_its_newest_event(health: dict[str, Any]) -> bool:
                return bool(health["flush_lag_s"] <= health["last_event_age_s"])

            waiting.wait_for(lambda: service.queue_health(fine_name)["events_written"] == 20
                             and on_disk_after_its_newest_event(service.queue_health(fine_name)),
                             "the other queue written and all on disk", timeout=60)
            # The failing queue was last all on disk before its newest event arrived, and stays so.
            failing_health = service.queue_health(failing_name)
            assert failing_health["events_received"] == 20 and failing_health["events_written"] == 0
            assert not on_disk_after_its_newest_event(failing_health)
            blocked.unlink()
            waiting.wait_for(lambda: service.queue_health(failing_name)["events_written"] == 20,
                             "the failing queue's events written once it can", timeout=60)
    finally:
        for queue in (failing, fine):
            queue.clear_queue()
            queue.close()
    added = EventRecorder.load(history, prefix=failing_name).frame().query("event == 'job_added'")["job_id"]
    assert sorted(added) == sorted(failing_ids)
