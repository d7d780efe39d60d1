"""MonitorMetrics against real servers: the gauges agree with the queue, the counters with analysis.

Events are recorded by a real EventRecorder while real queue operations run,
and read up to a sentinel message the test publishes (no sleeping). Leases
and queue times are aged by rewriting them, not by waiting.
"""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from botrix_toolkit.core.errors import InvalidInputError
from botrix_toolkit.core.queue import QueueService
from botrix_toolkit.frames import analysis
from botrix_toolkit.frames.events import EventRecorder
from botrix_toolkit.monitor.job_tracker import JobTracker
from botrix_toolkit.monitor.metrics import MonitorMetrics, metrics_for_service
from botrix_toolkit.monitor.service import MonitorService
from tests import waiting

WAIT_S = 60.0  # a guard against hanging, never a speed assertion
SENTINEL = b'{"event":"test-sentinel"}'
COUNTERS = {"added": "botrix_jobs_added_total", "completed": "botrix_jobs_completed_total",
            "failed": "botrix_jobs_failed_total", "cancelled": "botrix_jobs_cancelled_total",
            "requeued": "botrix_jobs_requeued_total", "started": "botrix_jobs_started_total",
            "recovered": "botrix_jobs_recovered_total"}


def sample(metrics: MonitorMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def run_workload(queue: QueueService) -> None:
    """Every kind of transition: adds, claims, completions, final and requeued failures, cancels, recovery."""
    ids = queue.add_jobs({"priority": p % 3, "count": 1, "password": "s3cret"} for p in range(300))
    for index, job in enumerate(queue.dequeue_jobs(200)):
        kind = index % 10
        if kind == 0:
            queue.fail_job(job.id, requeue=True)
        elif kind == 1:
            queue.fail_job(job.id)
        elif kind == 2:
            queue.cancel_job(job.id)
        elif kind != 3:  # kind 3 stays held: recovered below
            queue.complete_job(job.id)
    queue.recover_stalled(timeout_s=0)
    queue.complete_jobs(job.id for job in queue.dequeue_jobs(60))
    queue.cancel_jobs(ids[-20:])
    queue.dequeue_jobs(5)  # left running


def record(queue: QueueService, work: Callable[[], object]) -> pd.DataFrame:
    """The events frame of everything ``work()`` published on the queue's channel."""
    with EventRecorder(queue) as recorder:
        work()
        queue.redis.publish(queue.keys.updates, SENTINEL)
        waiting.wait_for(lambda: len(recorder.malformed()) >= 1, "the sentinel message", WAIT_S)
        return recorder.frame()


@pytest.fixture
def recorded(queue: QueueService) -> pd.DataFrame:
    events = record(queue, lambda: run_workload(queue))
    assert len(events) > 1000
    return events


def chunks(events: pd.DataFrame, count: int, seed: int) -> Iterator[pd.DataFrame]:
    cuts = np.sort(np.random.default_rng(seed).choice(np.arange(1, len(events)), count - 1, replace=False))
    for start, stop in zip([0, *cuts], [*cuts, len(events)]):
        yield events.iloc[start:stop]


# -- counters and histograms -----------------------------------------------------------

@pytest.mark.parametrize("pieces", [1, 7, 60])
def test_counters_agree_with_throughput_however_the_events_are_chunked(
    queue: QueueService, recorded: pd.DataFrame, pieces: int
) -> None:
    metrics = MonitorMetrics([queue])
    name = queue.keys.prefix
    for chunk in chunks(recorded, pieces, seed=pieces):
        metrics.observe_events(name, chunk)
    expected = analysis.throughput(recorded, freq="1h").sum()
    assert expected["completed"] > 100 and expected["requeued"] > 0 and expected["failed"] > 0
    assert expected["cancelled"] > 0 and expected["recovered"] > 0
    for kind, metric in COUNTERS.items():
        counted = sum(sample(metrics, metric, queue=name, priority=level) or 0
                      for level in ("high", "normal", "low", "unknown"))
        assert counted == expected[kind], kind

    # By priority: each attempt's outcome in the priority of its add, as analysis.latency reads it.
    latency = analysis.latency(recorded)
    for level in ("high", "normal", "low"):
        mine = latency[latency["priority_label"] == level]
        assert sample(metrics, "botrix_jobs_completed_total", queue=name, priority=level) == (
            (mine["outcome"] == "completed").sum())
        assert sample(metrics, "botrix_job_wait_seconds_count", queue=name, priority=level) == (
            mine["wait_s"].notna().sum())
        assert sample(metrics, "botrix_job_run_seconds_count", queue=name, priority=level) == (
            mine["run_s"].notna().sum())
        assert sample(metrics, "botrix_job_wait_seconds_sum", queue=name, priority=level) == pytest.approx(
            mine["wait_s"].sum(), rel=1e-9, abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("pieces", [1, 7, 60, 600])
def test_wait_and_run_seconds_are_latency_s_however_the_events_are_chunked(
    recorded: pd.DataFrame, pieces: int
) -> None:
    tracker = JobTracker()
    measured: dict[str, dict[str, list[np.ndarray]]] = {"wait_s": {}, "run_s": {}}
    for chunk in chunks(recorded, pieces, seed=pieces):
        result = tracker.observe(chunk)
        for column, by_label in (("wait_s", result.wait_s), ("run_s", result.run_s)):
            for label, seconds in by_label.items():
                measured[column].setdefault(label, []).append(seconds)
    latency = analysis.latency(recorded)
    for column, by_label in measured.items():
        assert set(by_label) <= {"high", "normal", "low"}, column  # every job was added while recording
        for level in ("high", "normal", "low"):
            expected = np.sort(latency.loc[latency["priority_label"] == level, column].dropna().to_numpy())
            seconds = np.sort(np.concatenate(by_label.get(level, [np.empty(0)])))
            assert len(expected) > 10, (column, level)
            np.testing.assert_array_equal(seconds, expected, err_msg=f"{column} {level}")


def test_a_completion_split_between_two_chunks_counts_once(queue: QueueService) -> None:
    job_id = queue.add_job({"priority": 2})

    def work() -> None:
        queue.dequeue_job()
        queue.complete_job(job_id)

    events = record(queue, work)
    completed = events.index[events["status"] == "completed"][0]
    tracker = JobTracker()
    first = tracker.observe(events.iloc[: completed + 1])  # ends with status_updated(completed)
    second = tracker.observe(events.iloc[completed + 1 :])  # starts with job_completed
    assert first.counts.at["unknown", "completed"] == 1  # its add was before the recording
    assert second.counts.to_numpy().sum() == 0


def test_a_failure_split_from_its_requeue_counts_as_requeued_not_failed(queue: QueueService) -> None:
    job_id = queue.add_job({"priority": 1})

    def work() -> None:
        queue.add_job({"id": job_id + "-x", "priority": 1})
        queue.dequeue_jobs(2)
        queue.fail_job(job_id, requeue=True)

    events = record(queue, work)
    failed = events.index[(events["job_id"] == job_id) & (events["status"] == "failed")][0]
    tracker = JobTracker()
    first = tracker.observe(events.iloc[: failed + 1])
    second = tracker.observe(events.iloc[failed + 1 :])
    total = first.counts + second.counts
    assert total["failed"].sum() == 0
    assert total["requeued"].sum() == 1
    assert analysis.throughput(events, "1h")["failed"].sum() == 0


def test_a_final_failure_left_undecided_is_counted_once_overdue(queue: QueueService) -> None:
    job_id = queue.add_job({"priority": 0})

    def work() -> None:
        queue.dequeue_job()
        queue.fail_job(job_id)

    events = record(queue, work)
    failed = events.index[events["status"] == "failed"][0]
    tracker = JobTracker()
    counts = tracker.observe(events.iloc[: failed + 1]).counts  # job_failed not seen yet
    assert counts["failed"].sum() == 0
    assert tracker.decide_overdue_failures(older_than_s=0)["failed"].sum() == 1
    assert tracker.decide_overdue_failures(older_than_s=0)["failed"].sum() == 0


def test_followed_jobs_stay_within_the_limit(queue: QueueService) -> None:
    events = record(queue, lambda: queue.add_jobs({"priority": 1} for _ in range(500)))
    tracker = JobTracker(max_open_jobs=100)
    for chunk in chunks(events, 5, seed=1):
        tracker.observe(chunk)
    assert tracker.followed == 100
    # Each of the other 400 was turned away at least once (a job whose rows straddle
    # two chunks is turned away in each).
    assert 400 <= tracker.untracked <= 404


def test_past_the_limit_a_requeue_split_between_chunks_still_counts_exactly(queue: QueueService) -> None:
    first, second = queue.add_jobs({"priority": 2} for _ in range(2))

    def work() -> None:
        queue.add_job({"id": first + "-a", "priority": 1})  # fills the tracker's one place
        queue.dequeue_jobs(3)
        queue.fail_job(first, requeue=True)
        queue.fail_job(second)

    events = record(queue, work)
    tracker = JobTracker(max_open_jobs=1)
    total = None
    failed_rows = events.index[events["status"] == "failed"]
    for start, stop in zip([0, *(failed_rows + 1)], [*(failed_rows + 1), len(events)]):
        counts = tracker.observe(events.iloc[start:stop]).counts
        total = counts if total is None else total + counts
    assert total is not None and tracker.untracked > 0
    expected = analysis.throughput(events, "1h").sum()
    assert total.sum()["requeued"] == expected["requeued"] == 1
    assert total.sum()["failed"] == expected["failed"] == 1
    assert (total.sum() == expected[list(total.columns)]).all()


# -- gauges ---------------------------------------------------------------------------

def test_gauges_agree_with_the_queue(queue: QueueService) -> None:
    ids = queue.add_jobs({"priority": p} for p in (0, 0, 0, 1, 1, 2, 2, 2))
    # Priorities the Go service writes and never rejects: above 2 counts as high, below 0 as low.
    queue.redis.zadd(queue.keys.queue, {"go-written-5": -5, "go-written-minus-3": 3})
    held = queue.dequeue_jobs(3)
    # Two held jobs whose leases were last renewed two minutes ago, and a lease
    # left behind by a job no longer held: only the first two are stalled.
    server_ms = queue.queue_gauges(30).server_time_ms
    queue.redis.zadd(queue.keys.leases, {held[0].id: server_ms - 120_000, held[1].id: server_ms - 120_000,
                                         "gone": server_ms - 120_000})
    # The oldest pending job became pending 100 s ago: its status key has 100 s less to live.
    oldest = ids[0]
    queue.redis.pexpire(queue.keys.status(oldest), (queue.ttl - 100) * 1000)

    metrics = MonitorMetrics([queue], lease_s=30)
    metrics.refresh()
    name = queue.keys.prefix
    stats = queue.get_queue_stats()
    for level in ("high", "normal", "low"):
        assert sample(metrics, "botrix_queue_pending_jobs", queue=name, priority=level) == stats[f"{level}_priority"]
    assert sample(metrics, "botrix_queue_processing_jobs", queue=name) == stats["processing_count"] == 3
    assert sample(metrics, "botrix_queue_stalled_jobs", queue=name) == 2
    age = sample(metrics, "botrix_queue_oldest_pending_seconds", queue=name)
    assert age is not None and 100 <= age < 100 + WAIT_S

    # Once that job is claimed, the next oldest is shown: the others were queued just now.
    queue.redis.zadd(queue.keys.queue, {oldest: -9})  # served first
    assert queue.dequeue_job().id == oldest
    metrics.refresh()
    age = sample(metrics, "botrix_queue_oldest_pending_seconds", queue=name)
    assert age is not None and age < 100
    queue.dequeue_jobs(100)
    metrics.refresh()
    assert sample(metrics, "botrix_queue_oldest_pending_seconds", queue=name) == 0
    assert sum(sample(metrics, "botrix_queue_pending_jobs", queue=name, priority=level)
               for level in ("high", "normal", "low")) == 0


def test_oldest_pending_follows_the_events_of_jobs_added_while_watching(queue: QueueService) -> None:
    metrics = MonitorMetrics([queue])
    metrics.refresh()  # an empty queue: nothing to follow yet
    name = queue.keys.prefix
    assert sample(metrics, "botrix_queue_oldest_pending_seconds", queue=name) == 0
    events = record(queue, lambda: queue.add_jobs({"priority": 1} for _ in range(10)))
    metrics.observe_events(name, events)
    metrics.refresh()
    age = sample(metrics, "botrix_queue_oldest_pending_seconds", queue=name)
    first_added = events["received_at"].min()
    assert age is not None and 0 < age <= (pd.Timestamp.now(tz="UTC") - first_added).total_seconds()


def test_health_is_shown_and_bad_health_refused(queue: QueueService) -> None:
    metrics = MonitorMetrics([queue])
    name = queue.keys.prefix
    metrics.set_health(name, {"events_received": 1234, "gaps": 2, "malformed": 1, "flush_lag_s": 0.5})
    assert sample(metrics, "botrix_monitor_events_received_total", queue=name) == 1234
    assert sample(metrics, "botrix_monitor_gaps_total", queue=name) == 2
    assert sample(metrics, "botrix_monitor_malformed_total", queue=name) == 1
    assert sample(metrics, "botrix_monitor_flush_lag_seconds", queue=name) == 0.5
    with pytest.raises(InvalidInputError, match="unknown health keys"):
        metrics.set_health(name, {"recieved": 1})
    with pytest.raises(InvalidInputError, match="'gaps' must be a number"):
        metrics.set_health(name, {"gaps": -1})
    with pytest.raises(InvalidInputError, match="no queue 'elsewhere'"):
        metrics.observe_events("elsewhere", pd.DataFrame())


def test_several_queues_are_labelled_apart(redis_url: str, key_prefix: str) -> None:
    first = QueueService.from_url(redis_url, prefix=key_prefix)
    second = QueueService.from_url(redis_url, prefix=key_prefix + ":b")
    try:
        first.add_jobs({"priority": 2} for _ in range(3))
        second.add_jobs({"priority": 2} for _ in range(5))
        metrics = MonitorMetrics([first, second])
        metrics.refresh()
        assert sample(metrics, "botrix_queue_pending_jobs", queue=key_prefix, priority="high") == 3
        assert sample(metrics, "botrix_queue_pending_jobs", queue=key_prefix + ":b", priority="high") == 5
    finally:
        first.clear_queue()
        second.clear_queue()
        first.close()
        second.close()



HEALTH = {"events_received": "botrix_monitor_events_received_total", "gaps": "botrix_monitor_gaps_total",
          "malformed": "botrix_monitor_malformed_total", "flush_lag_s": "botrix_monitor_flush_lag_seconds"}


def test_a_monitored_queue_shows_its_own_recorder_health_not_the_others(
        redis_url: str, key_prefix: str, tmp_path: Path) -> None:
    busy_name, quiet_name = key_prefix, key_prefix + ":quiet"
    history = tmp_path / "history"
    with MonitorService(redis_url, [busy_name], history, flush_s=0.2):
        pass  # a first run of the busy queue alone: the second run finds its downtime, the quiet queue has none
    busy = QueueService.from_url(redis_url, prefix=busy_name)
    quiet = QueueService.from_url(redis_url, prefix=quiet_name)
    service = MonitorService(redis_url, [quiet_name, busy_name], history, flush_s=0.2)
    metrics = metrics_for_service(service)
    try:
        with service:
            busy.add_jobs({"priority": 2} for _ in range(30))
            busy.complete_jobs(job.id for job in busy.dequeue_jobs(10))
            busy.redis.publish(busy.keys.updates, b"not an event")
            expected_events = 30 * 2 + 10 * 3  # an add publishes 2 messages, a claim 1, a completion 2
            waiting.wait_for(lambda: service.queue_health(busy_name)["events_received"] == expected_events + 1,
                             "the busy queue's messages", WAIT_S)
        # Stopped: everything received is on disk and counted.
        metrics.refresh()
        busy_health, quiet_health = service.queue_health(busy_name), service.queue_health(quiet_name)
    finally:
        for queue in (busy, quiet):
            queue.clear_queue()
            queue.close()
    for name, received, gaps, malformed in ((busy_name, expected_events + 1, 1, 1), (quiet_name, 0, 0, 0)):
        assert sample(metrics, HEALTH["events_received"], queue=name) == received, name
        assert sample(metrics, HEALTH["gaps"], queue=name) == gaps, name
        assert sample(metrics, HEALTH["malformed"], queue=name) == malformed, name
        lag = sample(metrics, HEALTH["flush_lag_s"], queue=name)
        assert lag is not None and lag >= 0, name
    assert busy_health["events_written"] == expected_events and busy_health["open_jobs"] == 20
    assert busy_health["last_event_age_s"] is not None
    assert quiet_health["events_written"] == 0 and quiet_health["last_event_age_s"] is None
    assert quiet_health["open_jobs"] == 0
    # The service's totals are the queues' sums.
    assert service.health()["events_received"] == expected_events + 1 and service.health()["gaps"] == 1


# -- serving ---------------------------------------------------------------------------

def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_run_with_recorders_serves_live_counts_on_loopback(queue: QueueService) -> None:
    stop, served = threading.Event(), []
    thread = threading.Thread(target=MonitorMetrics.run_with_recorders, args=([queue],), daemon=True,
                              kwargs={"refresh_s": 0.2, "drain_s": 0.2, "stop": stop, "on_ready": served.append})
    thread.start()
    try:
        waiting.wait_for(lambda: bool(served), "the metrics to be served", WAIT_S)
        url = served[0].url
        assert url is not None and url.startswith("http://127.0.0.1:")
        queue.add_jobs({"priority": 2} for _ in range(40))
        queue.complete_jobs(job.id for job in queue.dequeue_jobs(25))
        name = queue.keys.prefix
        completed = ("botrix_jobs_completed_total", (("priority", "high"), ("queue", name)))
        waiting.wait_for(lambda: scrape(url).get(completed) == 25, "25 completions on /metrics", WAIT_S)
        pending = ("botrix_queue_pending_jobs", (("priority", "high"), ("queue", name)))
        waiting.wait_for(lambda: scrape(url).get(pending) == 15, "15 pending on /metrics", WAIT_S)
        received = scrape(url)[("botrix_monitor_events_received_total", (("queue", name),))]
        assert received == 40 * 2 + 25 * 3  # an add publishes 2 messages, a claim 1, a completion 2
    finally:
        stop.set()
        thread.join(WAIT_S)
    assert not thread.is_alive()
    assert served[0].url is None  # closed: nothing left listening


def test_serve_binds_loopback_by_default_and_refuses_a_bad_port(queue: QueueService) -> None:
    with MonitorMetrics([queue]) as metrics:
        url = metrics.serve()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
        metrics.refresh()
        assert ("botrix_queue_processing_jobs", (("queue", queue.keys.prefix),)) in scrape(url)
        with pytest.raises(InvalidInputError, match="already served"):
            metrics.serve()
    assert metrics.url is None
    with pytest.raises(InvalidInputError, match="port must be"):
        MonitorMetrics([queue]).serve(port=70000)


def test_a_health_source_is_read_on_each_refresh(queue: QueueService) -> None:
    name = queue.keys.prefix
    received = iter([7, 19])
    metrics = MonitorMetrics([queue], health_source=lambda: {name: {"events_received": next(received),
                                                                     "flush_lag_s": 1.5}})
    metrics.refresh()
    assert sample(metrics, "botrix_monitor_events_received_total", queue=name) == 7
    metrics.refresh()
    assert sample(metrics, "botrix_monitor_events_received_total", queue=name) == 19
    assert sample(metrics, "botrix_monitor_flush_lag_seconds", queue=name) == 1.5
