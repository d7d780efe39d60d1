"""What a scrape of the monitor shows: each queue's state and the metric families built from it.

``MonitorMetrics`` (metrics.py) keeps one ``QueueState`` per queue up to date;
``metric_families`` turns them into prometheus-client families at scrape
time, so a scrape costs nothing between scrapes and always sees one state.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from botrix_toolkit.core.queue import QueueService
from botrix_toolkit.monitor.job_tracker import COUNTED_KINDS, PRIORITY_LABELS, JobTracker

# Seconds; from a fast claim to a long job.
WAIT_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
                                   120, 300, 600, 1800, 3600, 10800)
RUN_BUCKETS = WAIT_BUCKETS
PRIORITY_LEVELS_SHOWN = ("high", "normal", "low")


@dataclass
class Histogram:
    """Bucket counts (not cumulative; the last is +Inf) and the sum, for one label set."""

    bounds: tuple[float, ...]
    counts: np.ndarray = field(init=False)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = np.zeros(len(self.bounds) + 1, dtype=np.int64)

    def observe(self, seconds: np.ndarray) -> None:
        # side="left": a value equal to a bound falls in that bucket (le is "<=").
        self.counts += np.bincount(np.searchsorted(self.bounds, seconds, side="left"),
                                   minlength=len(self.counts))
        self.total += float(seconds.sum())

    def buckets(self) -> list[tuple[str, float]]:
        cumulative = np.cumsum(self.counts)
        return [*((_float_text(b), float(c)) for b, c in zip(self.bounds, cumulative)),
                ("+Inf", float(cumulative[-1]))]


@dataclass
class QueueState:
    """Everything shown about one queue."""

    service: QueueService
    tracker: JobTracker
    counts: pd.DataFrame
    wait: dict[str, Histogram]
    run: dict[str, Histogram]
    pending: dict[str, int] = field(default_factory=dict)
    processing: int | None = None
    stalled: int | None = None
    oldest_pending_s: float | None = None
    refreshed_at: float | None = None
    refresh_errors: int = 0
    health: dict[str, float] = field(default_factory=dict)
    seeded: bool = False
    seeded_at: float = -float("inf")  # monotonic time of the last read of the queue


def metric_families(queues: Mapping[str, QueueState]) -> Iterator[Metric]:
    """Every family /metrics serves, each with one sample set per queue (label ``queue``)."""
    pending = GaugeMetricFamily("botrix_queue_pending_jobs", "Jobs waiting in the queue, exact count per priority "
                                "level (high > 2 counts as high, < 0 as low)", labels=["queue", "priority"])
    processing = GaugeMetricFamily("botrix_queue_processing_jobs", "Jobs held by workers", labels=["queue"])
    stalled = GaugeMetricFamily("botrix_queue_stalled_jobs", "Jobs held by workers whose lease was not renewed "
                                "for longer than the lease length", labels=["queue"])
    oldest = GaugeMetricFamily("botrix_queue_oldest_pending_seconds", "How long the job that has waited longest "
                               "has been in the queue (0 when empty)", labels=["queue"])
    refreshed = GaugeMetricFamily("botrix_monitor_last_refresh_timestamp_seconds", "When the queue gauges were "
                                  "last read (Unix time)", labels=["queue"])
    errors = CounterMetricFamily("botrix_monitor_refresh_errors", "Refreshes of the queue gauges that failed",
                                 labels=["queue"])
    followed = GaugeMetricFamily("botrix_monitor_followed_jobs", "Queued and running jobs followed for wait and "
                                 "run times", labels=["queue"])
    untracked = CounterMetricFamily("botrix_monitor_unfollowed_jobs", "Times a job was not followed because the "
                                    "limit of followed jobs was reached (its times are not measured)",
                                    labels=["queue"])
    # In COUNTED_KINDS order: the columns of a queue's counts.
    jobs = {kind: CounterMetricFamily(f"botrix_jobs_{kind}", _JOB_COUNTERS[kind], labels=["queue", "priority"])
            for kind in COUNTED_KINDS}
    wait = HistogramMetricFamily("botrix_job_wait_seconds", "Time from a job's add to its claim",
                                 labels=["queue", "priority"])
    run = HistogramMetricFamily("botrix_job_run_seconds", "Time from a job's claim to its end (completed, failed, "
                                "cancelled or recovered)", labels=["queue", "priority"])
    health: dict[str, CounterMetricFamily | GaugeMetricFamily] = {
        "events_received": CounterMetricFamily("botrix_monitor_events_received", "Messages the recorder received",
                                               labels=["queue"]),
        "gaps": CounterMetricFamily("botrix_monitor_gaps", "Periods the recorder was not subscribed (events may "
                                    "be missing)", labels=["queue"]),
        "malformed": CounterMetricFamily("botrix_monitor_malformed", "Messages that were not events",
                                         labels=["queue"]),
        "flush_lag_s": GaugeMetricFamily("botrix_monitor_flush_lag_seconds", "Seconds since every event the "
                                         "recorder had received was last on disk: at most how long the oldest "
                                         "event not yet written has waited", labels=["queue"]),
    }
    for name, state in queues.items():
        for level in PRIORITY_LEVELS_SHOWN:
            if level in state.pending:
                pending.add_metric([name, level], state.pending[level])
        if state.processing is not None:
            processing.add_metric([name], state.processing)
        if state.stalled is not None:
            stalled.add_metric([name], state.stalled)
        if state.oldest_pending_s is not None:
            oldest.add_metric([name], state.oldest_pending_s)
        if state.refreshed_at is not None:
            refreshed.add_metric([name], state.refreshed_at)
        errors.add_metric([name], state.refresh_errors)
        followed.add_metric([name], state.tracker.followed)
        untracked.add_metric([name], state.tracker.untracked)
        counts = state.counts.to_numpy()
        for column, counter in enumerate(jobs.values()):
            for row, label in enumerate(PRIORITY_LABELS):
                value = int(counts[row, column])
                if label in PRIORITY_LEVELS_SHOWN or value:
                    counter.add_metric([name, label], value)
        for histogram_family, histograms in ((wait, state.wait), (run, state.run)):
            for label, histogram in histograms.items():
                histogram_family.add_metric([name, label], histogram.buckets(), histogram.total)
        for key, health_family in health.items():
            if key in state.health:
                health_family.add_metric([name], state.health[key])
    yield from (pending, processing, stalled, oldest, *jobs.values(), wait, run, *health.values(),
                refreshed, errors, followed, untracked)


_JOB_COUNTERS = {
    "added": "Jobs added (a new job, or an id reused after it ended)",
    "started": "Jobs claimed by a worker",
    "completed": "Jobs completed (each completion once)",
    "failed": "Jobs failed for good (a failure that is requeued counts as requeued)",
    "cancelled": "Jobs cancelled",
    "requeued": "Jobs failed and put back in the queue",
    "recovered": "Stalled jobs put back in the queue",
}
assert set(_JOB_COUNTERS) == set(COUNTED_KINDS)


def zero_counts() -> pd.DataFrame:
    return pd.DataFrame(0, index=pd.Index(PRIORITY_LABELS, name="priority"), columns=list(COUNTED_KINDS),
                        dtype="int64")


def _float_text(value: float) -> str:
    return repr(float(value))
