"""How long the dashboard's 7-day activity view takes over a history of 100 million events.

``run_history_view_benchmark(events)`` builds a synthetic history folder as
``botrix monitor`` leaves it after a week at a steady, daily-varying rate:
the per-minute rollups of every minute (written directly with pyarrow,
vectorised: no Python object per event), one file per minute as the monitor
writes them, plus the raw events of the last ``raw_hours`` hours, generated
as whole job lives and rolled up by the monitor's own ``RollupBuilder``, so
those minutes agree with their events; then the monitor's own compaction
runs, leaving one file per closed day and, for today, one file for its
closed hours and a file a minute for the last hour (the week ends at 23:59
UTC, so today has the most rows). Then it times the data step of the 7-day view
(``frames.history_view.activity_range``, with the last minutes as the live
recorder's events): the first run reads every file (cold), the later ones
what a dashboard refresh reads (each rollup file is read once per process).
Building the figures is timed apart. The folder is deleted afterwards unless
one is given. Run from a shell:

    python -m botrix_toolkit.bench.history_view --events 100000000 [--folder DIR]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from botrix_toolkit.frames import history_view
from botrix_toolkit.frames.dataset_layout import EVENTS_SCHEMA, ROLLUP_COUNTS_SCHEMA, ROLLUP_LATENCY_SCHEMA
from botrix_toolkit.frames.rollups import RollupBuilder
from botrix_toolkit.monitor.dataset_writer import DatasetWriter
from botrix_toolkit.monitor.maintenance import compact
from botrix_toolkit.monitor.service import COMPACT_AFTER

TARGET_MS = 500.0
PREFIX = "botrix:bench-history"
DAYS = 7
EVENTS_PER_JOB = 5  # status_updated(pending), job_added, status_updated(running), status_updated(end), job_<end>
# A job's end: completed, failed, cancelled.
END_EVENTS = ("job_completed", "job_failed", "job_cancelled")
END_SHARES = (0.96, 0.03, 0.01)
PRIORITIES = (2, 1, 0)
PRIORITY_SHARES = (0.2, 0.6, 0.2)
LIVE_MINUTES = 5  # the dashboard's recorder holds the last minutes (it started that long ago)
# A running monitor: raw events on disk until this long before the end, rollups until the minute before.
STORED_LAG = pd.Timedelta(seconds=30)
_US_PER_MINUTE = 60_000_000


@dataclass(frozen=True)
class HistoryViewBenchmark:
    """What was built and how long the 7-day view took (milliseconds).

    ``events``: events in the history (rollups' counts plus raw rows);
    ``raw_events``: those also stored raw; ``rollup_rows``: rows of
    rollup_counts; ``files``: Parquet files in the folder; ``disk_mb``;
    ``build_s``: seconds to build it; ``data_ms``: each timed run of the data
    step (the first one cold); ``figures_ms``: building the three figures;
    ``view_events``: events the 7-day view counted (its chart's sum plus
    status_updated), which must equal ``events``.
    """

    events: int
    raw_events: int
    rollup_rows: int
    files: int
    disk_mb: float
    build_s: float
    data_ms: list[float]
    figures_ms: list[float]
    view_events: int
    folder: str | None

    @property
    def cold_ms(self) -> float:
        """The first run: every file of the week read (once per dashboard process)."""
        return self.data_ms[0]

    @property
    def median_ms(self) -> float:
        """The median of the later runs: what each dashboard refresh of the view costs."""
        return statistics.median(self.data_ms[1:] or self.data_ms)

    @property
    def meets_target(self) -> bool:
        return self.median_ms < TARGET_MS


def _minute_totals(events: int, minutes: int, rng: np.random.Generator) -> np.ndarray:
    """Events per minute summing to ``events``: a daily wave (busy afternoons) with Poisson-like noise."""
    of_day = np.arange(minutes) % 1440
    weight = 1.0 + 0.6 * np.sin(2 * np.pi * (of_day - 360) / 1440)
    return rng.multinomial(events, weight / weight.sum())


def _synthetic_rollups(first_minute_us: int, totals: np.ndarray, rng: np.random.Generator
                       ) -> tuple[pa.Table, pa.Table]:
    """rollup_counts and rollup_latency rows of minutes with ``totals`` events each."""
    minutes = len(totals)
    names = ["status_updated", "job_added", *END_EVENTS]
    job_share = 1.0 / EVENTS_PER_JOB
    event_shares = np.array([3 * job_share, job_share, *(job_share * s for s in END_SHARES)])
    shares = np.outer(event_shares, PRIORITY_SHARES).ravel()  # event-major: (event, priority)
    counts = rng.multinomial(totals, shares / shares.sum())  # (minutes, events * priorities)
    minute_us = first_minute_us + np.arange(minutes, dtype=np.int64) * _US_PER_MINUTE
    cells = len(shares)
    keep = counts.ravel() > 0
    count_table = pa.table({
        "minute": pa.array(np.repeat(minute_us, cells)[keep]).cast(ROLLUP_COUNTS_SCHEMA.field("minute").type),
        "event": pa.array(np.tile(np.repeat(names, len(PRIORITIES)), minutes)[keep]),
        "priority": pa.array(np.tile(np.tile(PRIORITIES, len(names)), minutes)[keep], pa.int64()),
        "count": pa.array(counts.ravel()[keep], pa.int64()),
    }, schema=ROLLUP_COUNTS_SCHEMA)
    # Jobs started per minute and priority ~ jobs added; quantiles follow the day's load.
    started = counts[:, len(PRIORITIES):2 * len(PRIORITIES)]
    load = totals / max(totals.mean(), 1)
    columns: dict[str, np.ndarray] = {
        "minute": np.repeat(minute_us, len(PRIORITIES)),
        "priority": np.tile(PRIORITIES, minutes),
    }
    for kind, base in (("wait", 2.0), ("run", 6.0)):
        p50 = np.repeat(base * load, len(PRIORITIES)) * rng.lognormal(0, 0.1, minutes * len(PRIORITIES))
        columns[f"{kind}_count"] = started.ravel()
        for stat, factor in (("p50_s", 1.0), ("p90_s", 2.5), ("p99_s", 6.0), ("max_s", 10.0)):
            columns[f"{kind}_{stat}"] = p50 * factor
    keep_rows = started.ravel() > 0
    latency_table = pa.table({
        name: pa.array(values[keep_rows]).cast(ROLLUP_LATENCY_SCHEMA.field(name).type)
        for name, values in columns.items()
    }, schema=ROLLUP_LATENCY_SCHEMA)
    return count_table, latency_table


def _job_events(first_minute_us: int, totals: np.ndarray, rng: np.random.Generator,
                end_us: int) -> pa.Table:
    """Raw events (``EVENTS_SCHEMA``) of whole job lives added over minutes with about ``totals`` events."""
    jobs_per_minute = np.maximum(totals // EVENTS_PER_JOB, 0)
    jobs = int(jobs_per_minute.sum())
    added = (first_minute_us + np.repeat(np.arange(len(totals), dtype=np.int64), jobs_per_minute) * _US_PER_MINUTE
             + rng.integers(0, _US_PER_MINUTE, jobs))
    started = added + (rng.exponential(2.0, jobs) * 1e6).astype(np.int64) + 1
    ended = started + (rng.lognormal(1.5, 0.6, jobs) * 1e6).astype(np.int64) + 1
    end_kind = rng.choice(len(END_EVENTS), jobs, p=END_SHARES)
    priority = rng.choice(PRIORITIES, jobs, p=PRIORITY_SHARES)
    # Five rows per job: event code, status code, time.
    events = np.array(["status_updated", "job_added", *END_EVENTS])
    statuses = np.array(["pending", "running", "completed", "failed", "cancelled"])
    times = np.stack([added, added + 1, started, ended, ended + 1], axis=1).ravel()
    event_code = np.stack([np.zeros(jobs, int), np.ones(jobs, int), np.zeros(jobs, int), np.zeros(jobs, int),
                           2 + end_kind], axis=1).ravel()
    status_code = np.stack([np.zeros(jobs, int), np.zeros(jobs, int), np.ones(jobs, int), 2 + end_kind,
                            2 + end_kind], axis=1).ravel()
    job = np.repeat(np.arange(jobs), EVENTS_PER_JOB)
    keep = times < end_us  # jobs still running at the end have not published their end yet
    order = np.argsort(times[keep], kind="stable")
    times, event_code, status_code, job = (a[keep][order] for a in (times, event_code, status_code, job))
    job_ids = pc.binary_join_element_wise("bench-", pc.cast(pa.array(job), pa.string()), "")
    event = pa.array(events).take(pa.array(event_code))
    status = pa.array(statuses).take(pa.array(status_code))
    is_add = event_code == 1
    prio = pa.array(np.where(is_add, priority[job], 0), pa.int64(), mask=~is_add)
    prio_text = pc.if_else(pa.array(is_add), pc.binary_join_element_wise(
        ',"priority":', pc.cast(prio, pa.string()), ""), "")
    data = pc.binary_join_element_wise('{"job_id":"', job_ids, '","status":"', status, '"', prio_text, "}", "")
    received = pa.array(times).cast(EVENTS_SCHEMA.field("received_at").type)
    timestamp = pa.array(times // 1_000_000 * 1_000_000).cast(EVENTS_SCHEMA.field("timestamp").type)
    return pa.table({"received_at": received, "timestamp": timestamp, "event": event, "job_id": job_ids,
                     "status": status, "priority": prio, "data": data}, schema=EVENTS_SCHEMA)


def build_history(folder: Path, events: int, now: pd.Timestamp, raw_hours: int = 1, seed: int = 7) -> dict:
    """Write a week of history ending at ``now`` into ``folder``; returns what was written.

    Keys: events (total), raw_events, rollup_rows, live (the last
    ``LIVE_MINUTES`` minutes of raw events as an events frame), live_since, stored_until (the
    monitor's state: raw events on disk until ``STORED_LAG`` before the end, rollups of the
    minutes before that one).
    """
    rng = np.random.default_rng(seed)
    end_minute = now.floor("min")
    minutes = DAYS * 1440
    first_us = (end_minute - pd.Timedelta(minutes=minutes)).value // 1000
    totals = _minute_totals(events, minutes, rng)
    raw_minutes = raw_hours * 60
    writer = DatasetWriter(folder)
    counts, latency = _synthetic_rollups(first_us, totals[:-raw_minutes], rng)
    today_us = end_minute.floor("D").value // 1000
    minute_col = counts.column("minute").cast(pa.int64()).to_numpy()
    latency_minutes = latency.column("minute").cast(pa.int64()).to_numpy()
    # Closed days in one go (compaction leaves them one file each); today a file per minute, as written.
    writer.append("rollup_counts", PREFIX, counts.filter(pa.array(minute_col < today_us)))
    writer.append("rollup_latency", PREFIX, latency.filter(pa.array(latency_minutes < today_us)))
    today_counts = counts.filter(pa.array(minute_col >= today_us))
    today_latency = latency.filter(pa.array(latency_minutes >= today_us))
    _append_per_minute(writer, today_counts, today_latency)
    raw = _job_events(first_us + (minutes - raw_minutes) * _US_PER_MINUTE, totals[-raw_minutes:], rng,
                      end_minute.value // 1000)
    live_since = end_minute - pd.Timedelta(minutes=LIVE_MINUTES)
    received = raw.column("received_at").cast(pa.int64()).to_numpy()
    stored_until = end_minute - STORED_LAG
    stored = raw.filter(pa.array(received < stored_until.value // 1000))
    writer.append("events", PREFIX, stored)
    builder = RollupBuilder()
    builder.add(stored)
    raw_counts, raw_latency = builder.close(stored_until.floor("min").value // 1000)
    _append_per_minute(writer, raw_counts, raw_latency)
    live = raw.filter(pa.array(received >= live_since.value // 1000)).drop_columns(["data"]).to_pandas(
        types_mapper={pa.int64(): pd.Int64Dtype(), pa.string(): pd.StringDtype()}.get)
    for column in ("received_at", "timestamp"):
        live[column] = live[column].astype("datetime64[ns, UTC]")
    writer.write_state(PREFIX, {"covered_until_ns": int(stored_until.value)})
    compact(folder, now.to_pydatetime(), COMPACT_AFTER, threading.Lock())  # what the running monitor has done
    return {"events": int(totals[:-raw_minutes].sum()) + raw.num_rows, "raw_events": raw.num_rows,
            "rollup_rows": counts.num_rows + raw_counts.num_rows, "live": live, "live_since": live_since,
            "stored_until": stored_until}


def _append_per_minute(writer: DatasetWriter, counts: pa.Table, latency: pa.Table) -> None:
    """One file per minute and table (the monitor's own files before compaction), written in one go."""
    for table_name, table in (("rollup_counts", counts), ("rollup_latency", latency)):
        if table.num_rows == 0:
            continue
        minutes = table.column("minute").cast(pa.int64()).to_numpy()
        for minute in np.unique(minutes):
            writer.append(table_name, PREFIX, table.filter(pa.array(minutes == minute)))


def run_history_view_benchmark(events: int = 100_000_000, runs: int = 7, folder: str | Path | None = None,
                               raw_hours: int = 1, now: pd.Timestamp | None = None) -> HistoryViewBenchmark:
    """Build the history (in a temporary folder unless ``folder``), time the 7-day view ``runs`` times.

    ``now``: where the week ends (default: 23:59 UTC today, when today's
    partition holds the most rows).
    """
    root = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="botrix-history-bench-"))
    try:
        now = pd.Timestamp.now(tz="UTC").floor("D") + pd.Timedelta(minutes=1439) if now is None else \
            pd.Timestamp(now).floor("min")
        began = time.perf_counter()
        built = build_history(root, events, now, raw_hours)
        build_s = time.perf_counter() - began
        start, end = history_view.range_bounds("7 days", now)
        data_ms, figures_ms = [], []
        view = None
        for _ in range(runs):
            began = time.perf_counter()
            view = history_view.activity_range(root, PREFIX, start, end, live_events=built["live"],
                                               live_since=built["live_since"], stored_until=built["stored_until"])
            data_ms.append((time.perf_counter() - began) * 1000)
            began = time.perf_counter()
            history_view.activity_range_figures(view)
            figures_ms.append((time.perf_counter() - began) * 1000)
        assert view is not None
        status_updates = history_view.event_counts(root, PREFIX, start, view.split, "rollups")
        live = built["live"]
        live_updates = int(((live["event"] == "status_updated") & (live["received_at"] >= view.split)).sum())
        view_events = int(view.throughput.to_numpy().sum()) + int(status_updates["status_updated"].sum()) \
            + live_updates
        files = list(root.rglob("*.parquet"))
        return HistoryViewBenchmark(
            events=built["events"], raw_events=built["raw_events"], rollup_rows=built["rollup_rows"],
            files=len(files), disk_mb=sum(f.stat().st_size for f in files) / 1e6, build_s=build_s,
            data_ms=data_ms, figures_ms=figures_ms, view_events=view_events,
            folder=str(root) if folder is not None else None,
        )
    finally:
        if folder is None:
            shutil.rmtree(root, ignore_errors=True)


def describe(result: HistoryViewBenchmark) -> str:
    """The result in a few lines, with the target."""
    runs = ", ".join(f"{ms:.0f}" for ms in result.data_ms)
    return (
        f"history: {result.events:,} events over {DAYS} days ({result.raw_events:,} also raw), "
        f"{result.rollup_rows:,} rollup rows, {result.files:,} files, {result.disk_mb:.1f} MB, "
        f"built in {result.build_s:.1f} s\n"
        f"7-day view data step: median {result.median_ms:.0f} ms of the refreshes after the first, "
        f"target < {TARGET_MS:.0f} ms {'ok' if result.meets_target else 'ABOVE'}; first read of every file "
        f"{result.cold_ms:.0f} ms (runs: {runs} ms)\n"
        f"figures: median {statistics.median(result.figures_ms):.0f} ms; "
        f"events the view counted: {result.view_events:,}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--folder", default=None, help="keep the history here (default: a temporary folder)")
    args = parser.parse_args(argv)
    print(describe(run_history_view_benchmark(args.events, args.runs, args.folder)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
