"""The activity charts over a chosen time range: live minutes from a recorder, older ones from the history folder.

``botrix dashboard --history DIR`` offers the ranges of ``RANGES`` and a
custom one. Minutes from ``split`` on come from the dashboard's own
``EventRecorder``; minutes before it from the folder ``botrix monitor``
writes (``frames.dataset_layout``), so no event is counted twice. Ranges
shorter than ``ROLLUPS_FROM`` read the raw events and are counted exactly as
the live charts count them (``analysis.throughput``, ``analysis.latency``);
longer ones read the per-minute rollups only, never the raw rows, and only
the partitions of the range.

No Streamlit here: ``bench.history_view`` times exactly this step, and the
tests call it on a history written by the monitor's own writer.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from botrix_toolkit.core.errors import InvalidInputError
from botrix_toolkit.frames import analysis, plots
from botrix_toolkit.frames.dataset_layout import PART_SUFFIX, STATE, TABLES, UTC_US, queue_dir, state_path
from botrix_toolkit.frames.history_dataset import last_received_at, read_table
from botrix_toolkit.frames.rollups import RollupBuilder

logger = logging.getLogger(__name__)

#: The ranges the activity charts offer, by label; "custom" takes two times.
RANGES: dict[str, pd.Timedelta] = {
    "5 minutes": pd.Timedelta(minutes=5),
    "1 hour": pd.Timedelta(hours=1),
    "24 hours": pd.Timedelta(hours=24),
    "7 days": pd.Timedelta(days=7),
}
CUSTOM_RANGE = "custom"
#: Ranges at least this long are read from the per-minute rollups, shorter ones from the raw events.
ROLLUPS_FROM = pd.Timedelta(hours=2)
#: A queue whose history ends longer ago than this has no monitor recording it (monitors flush each 1 s
#: by default and write their state file at every flush, so this is many missed flushes).
STALE_AFTER = pd.Timedelta(seconds=30)
#: A short range whose rollups count more events than this is read from the rollups too (the raw
#: analysis costs about a second per 100,000 events on a busy 2-core machine).
MAX_RAW_EVENTS = 200_000
#: At most about this many points per line: a week is drawn in 10-minute bins, not 10,080 minutes.
MAX_POINTS = 1440
_NICE_BINS = [pd.Timedelta(s) for s in ("1s", "2s", "5s", "10s", "15s", "30s", "1min", "2min", "5min",
                                        "10min", "15min", "30min", "1h", "2h", "3h", "6h", "12h", "1D")]
_MINUTE = pd.Timedelta(minutes=1)
_UTC_NS: Final = "datetime64[ns, UTC]"
_US_TYPE = UTC_US
# The raw event columns the analysis reads (never ``data``: no job field can reach a chart).
_EVENT_READ = ["received_at", "timestamp", "event", "job_id", "status", "priority"]
# status_updated is every status write (three per job): left out of the rollups' rate chart.
_NOT_CHARTED = ("status_updated",)
LATENCY_TREND_COLUMNS: tuple[str, ...] = ("time", "level", "kind", "count", "p50_s", "p90_s", "p99_s", "max_s")
_QUANTILES = {"p50_s": 0.5, "p90_s": 0.9, "p99_s": 0.99}

Source = Literal["events", "rollups"]


# -- is there a history, and is a monitor writing it? ---------------------------------------------


@dataclass(frozen=True)
class HistoryStatus:
    """What the page says about the history folder, in one line.

    ``usable``: the folder can be read for this queue (older minutes come
    from it); ``recording``: a monitor wrote this queue's state recently;
    ``covered_until``: every event before this time is on disk (None if
    unknown); ``message``: the line to show.
    """

    folder: Path | None
    usable: bool
    recording: bool
    covered_until: pd.Timestamp | None
    message: str


def history_status(folder: str | Path | None, prefix: str, now: pd.Timestamp) -> HistoryStatus:
    """Whether ``folder`` holds ``prefix``'s history and whether a monitor is writing it now.

    Never raises for a bad folder: a missing folder, one that is not a
    monitor's history, or an unreadable state file is a status with a message.
    """
    if folder is None or not str(folder).strip():
        return HistoryStatus(None, False, False, None,
                             "No history folder given (botrix dashboard --history DIR or BOTRIX_HISTORY_DIR): "
                             "the charts show what this dashboard recorded since it started.")
    root = Path(folder).expanduser()
    if not root.is_dir():
        return HistoryStatus(root, False, False, None,
                             f"History folder {str(root)!r} does not exist or is not a folder: "
                             "the charts show live minutes only.")
    if not any((root / name).is_dir() for name in (*TABLES, STATE)):
        return HistoryStatus(root, False, False, None,
                             f"{str(root)!r} is not a botrix monitor history (no events/, rollup_counts/ "
                             "or _state/ inside): the charts show live minutes only.")
    try:
        covered = _covered_until(root, prefix)
    except (OSError, ValueError, pa.ArrowException) as exc:
        return HistoryStatus(root, False, False, None,
                             f"Cannot read the history of {prefix!r} in {str(root)!r}: {_one_line(exc)}.")
    if covered is None:
        return HistoryStatus(root, False, False, None,
                             f"No monitor has recorded queue {prefix!r} into {str(root)!r} yet "
                             f"(botrix monitor --prefix {prefix} --history {root}): live minutes only.")
    age = now - covered
    if age > STALE_AFTER:
        return HistoryStatus(root, True, False, covered,
                             f"No monitor is recording queue {prefix!r}: its history ends "
                             f"{covered:%Y-%m-%d %H:%M:%S} UTC ({_age(age)} ago); newer minutes are "
                             "only what this dashboard recorded.")
    return HistoryStatus(root, True, True, covered,
                         f"History of {prefix!r} from {str(root)!r}, a monitor is recording it "
                         f"(on disk until {covered:%H:%M:%S} UTC).")


def _covered_until(root: Path, prefix: str) -> pd.Timestamp | None:
    """The queue's state file's ``covered_until_ns``, else its newest event's receive time."""
    path = state_path(root, prefix)
    if path.is_file():
        state = json.loads(path.read_text(encoding="utf-8"))
        covered = state.get("covered_until_ns") if isinstance(state, dict) else None
        if isinstance(covered, int):
            return pd.Timestamp(covered, unit="ns", tz="UTC")
    if not queue_dir(root, "events", prefix).is_dir() and not queue_dir(root, "rollup_counts", prefix).is_dir():
        return None
    return last_received_at(root, prefix)


def _age(age: pd.Timedelta) -> str:
    seconds = age.total_seconds()
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()).rstrip(".") or type(exc).__name__


# -- the range -> the charts' frames --------------------------------------------------------------


@dataclass(frozen=True)
class ActivityRange:
    """The activity charts' frames for [start, end).

    ``source`` "events": ``throughput`` is ``analysis.throughput`` in bins of
    ``bin`` and ``latency`` is ``analysis.latency`` (one row per attempt), as
    the live charts. ``source`` "rollups": ``throughput`` has one int64 column
    per named event (job_added, job_completed, ...; status_updated left out)
    counting events per bin, and ``latency`` is a latency trend frame
    (``LATENCY_TREND_COLUMNS``: time, level high/normal/low, kind wait/run,
    count, p50_s, p90_s, p99_s, max_s; quantiles over several minutes are the
    count-weighted mean of the minutes' quantiles). Both throughput indexes
    are ``time`` (UTC, bin starts). ``split``: rows before it were read from
    the folder, from it on from the live recorder; ``stored_rows`` and
    ``live_rows`` count the rows each gave.
    """

    start: pd.Timestamp
    end: pd.Timestamp
    split: pd.Timestamp
    source: Source
    bin: pd.Timedelta
    throughput: pd.DataFrame
    latency: pd.DataFrame
    stored_rows: int
    live_rows: int


def range_bounds(label: str, now: pd.Timestamp) -> tuple[pd.Timestamp, pd.Timestamp]:
    """[now - span, now) for a label of ``RANGES``."""
    if label not in RANGES:
        raise InvalidInputError(f"range must be one of {list(RANGES)} or {CUSTOM_RANGE!r}, got {label!r}")
    end = _utc(now, "now")
    return end - RANGES[label], end


def source_for(span: pd.Timedelta) -> Source:
    """Raw events below ``ROLLUPS_FROM``, per-minute rollups from there on."""
    return "rollups" if span >= ROLLUPS_FROM else "events"


def bin_for(span: pd.Timedelta, source: Source) -> pd.Timedelta:
    """The shortest round bin that draws ``span`` in at most ``MAX_POINTS`` points (rollups: >= 1 min)."""
    floor = _MINUTE if source == "rollups" else pd.Timedelta(seconds=1)
    for step in _NICE_BINS:
        if step >= floor and span / step <= MAX_POINTS:
            return step
    return _NICE_BINS[-1]


def live_split(start: pd.Timestamp, end: pd.Timestamp, live_since: pd.Timestamp | None,
               source: Source, stored_until: pd.Timestamp | None = None) -> pd.Timestamp:
    """Where stored rows end and live ones begin, inside [start, end].

    ``live_since``: from when the recorder holds every event (None: no
    recorder, all from the folder). Rollups cover whole minutes, so for them
    the split moves to the next whole minute, and, when the folder holds
    every event until ``stored_until`` (a monitor's state), on to the last
    minute the monitor closed: its rollups are cheaper than rolling up hours
    of the recorder's events on every refresh. Raw events prefer the
    recorder's memory to the disk.
    """
    if live_since is None:
        return end
    split = _utc(live_since, "live_since")
    if source == "rollups":
        split = split.ceil("min")
        if stored_until is not None:
            split = max(split, _utc(stored_until, "stored_until").floor("min"))
    return min(max(split, start), end)


def activity_range(folder: str | Path | None, prefix: str, start: pd.Timestamp, end: pd.Timestamp,
                   live_events: pd.DataFrame | None = None, live_since: pd.Timestamp | None = None,
                   source: Source | None = None, stored_until: pd.Timestamp | None = None,
                   max_raw_events: int = MAX_RAW_EVENTS) -> ActivityRange:
    """The throughput and latency frames of ``prefix`` over [start, end).

    ``folder``: the history folder (None: live rows only). ``live_events``: the
    recorder's events frame, holding every event from ``live_since`` on;
    ``stored_until``: the folder holds every event before it
    (``HistoryStatus.covered_until``). ``source`` defaults to ``source_for(end - start)``,
    or "rollups" when the folder's rollups count more than ``max_raw_events``
    events in the range. A folder that cannot
    be read raises InvalidInputError naming it and the problem.
    """
    start, end = _utc(start, "start"), _utc(end, "end")
    if not end > start:
        raise InvalidInputError(f"the range must end after it starts; got {start} to {end}")
    if source is None:
        source = source_for(end - start)
        busy = folder is not None and source == "events" and \
            _stored_event_count(folder, prefix, start, end) > max_raw_events
        source = "rollups" if busy else source  # a busy queue's hour: its rollups, not millions of raw rows
    step = bin_for(end - start, source)
    split = live_split(start, end, live_since, source, stored_until) if live_events is not None else end
    live = _window(live_events, split, end) if live_events is not None else None
    try:
        if source == "events":
            stored = _stored_events(folder, prefix, start, split)
            if live is None or live.empty:
                events = stored
            elif stored.empty:
                events = live[_EVENT_READ]
            else:
                events = pd.concat([stored, live[_EVENT_READ]], ignore_index=True)
            throughput = _complete_bins(analysis.throughput(events, freq=_freq(step)), start, end, step)
            latency = analysis.latency(events)
            stored_rows = len(stored)
        else:
            # numpy from here on: a week is ~150,000 rollup rows binned on every refresh
            counts = _stored_count_rows(folder, prefix, start, split)
            stored_rows = len(counts.minute_ns)
            trend = _latency_rows(_stored_latency(folder, prefix, start, split))
            if live is not None and not live.empty:
                live_counts, live_latency = _live_rollups(live)
                counts = counts.plus(_count_rows(live_counts))
                trend = trend.plus(_latency_rows(_minute_latency(live_latency)))
            throughput = counts.binned(_bins(start, end, step), step)
            latency = trend.binned(start.floor(step), step)
    except (OSError, pa.ArrowException) as exc:
        raise InvalidInputError(f"cannot read the history folder {str(folder)!r}: {_one_line(exc)}") from exc
    return ActivityRange(start, end, split, source, step, throughput, latency, stored_rows,
                         0 if live is None else len(live))


def activity_range_figures(view: ActivityRange) -> dict[str, go.Figure]:
    """The throughput, wait and run figures of a range (the live charts' look for raw events)."""
    if view.source == "events":
        return {
            "throughput": plots.throughput_figure(view.throughput, view.bin.total_seconds()),
            "wait": plots.latency_figure(view.latency, "wait_s"),
            "run": plots.latency_figure(view.latency, "run_s"),
        }
    return {
        "throughput": plots.event_rate_figure(view.throughput, view.bin.total_seconds()),
        "wait": plots.latency_trend_figure(view.latency, "wait"),
        "run": plots.latency_trend_figure(view.latency, "run"),
    }


def event_counts(folder: str | Path, prefix: str, start: pd.Timestamp, end: pd.Timestamp,
                 source: Source) -> pd.DataFrame:
    """Events per minute by event name over [start, end), from the raw events or the rollups.

    Index: ``minute`` (UTC), the minutes with at least one event, sorted;
    columns: event names (sorted), int64 counts. Both sources give the same
    frame for whole minutes the monitor has closed.
    """
    start, end = _utc(start, "start"), _utc(end, "end")
    if source == "rollups":
        counts = _stored_count_rows(folder, prefix, start, end).per_minute()
    else:
        counts = _raw_count_rows(_stored_events(folder, prefix, start, end)).per_minute()
    counts = counts.loc[counts.sum(axis=1) > 0]
    counts = counts.reindex(columns=sorted(counts.columns)).astype("int64")
    counts.columns = pd.Index([str(c) for c in counts.columns])
    return counts


def _stored_event_count(folder: str | Path, prefix: str, start: pd.Timestamp, end: pd.Timestamp) -> int:
    """Events the rollups count in the minutes of [start, end) (cheap: rollup files are kept in memory)."""
    try:
        table = ROLLUP_FILES.read(Path(folder), "rollup_counts", prefix, start.floor("min"), end)
    except (OSError, pa.ArrowException) as exc:
        raise InvalidInputError(f"cannot read the history folder {str(folder)!r}: {_one_line(exc)}") from exc
    return int(pc.sum(table.column("count")).as_py() or 0)


# -- reading the folder ------------------------------------------------------------------------------


def _stored_events(folder: str | Path | None, prefix: str, start: pd.Timestamp,
                   end: pd.Timestamp) -> pd.DataFrame:
    """Raw events of [start, end) as an events frame without ``data`` (empty without a folder)."""
    if folder is None or not end > start:
        return _empty_events()
    table = read_table(folder, "events", prefix, start, end, columns=_EVENT_READ)
    if table.num_rows == 0:
        return _empty_events()
    table = table.sort_by([("received_at", "ascending")])  # files of a partition may come in any order
    frame = table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype(), pa.string(): pd.StringDtype()}.get)
    for column in ("received_at", "timestamp"):
        frame[column] = frame[column].astype(_UTC_NS)
    return frame


def _empty_events() -> pd.DataFrame:
    return pd.DataFrame({
        "received_at": pd.Series(dtype=_UTC_NS), "timestamp": pd.Series(dtype=_UTC_NS),
        "event": pd.Series(dtype="string"), "job_id": pd.Series(dtype="string"),
        "status": pd.Series(dtype="string"), "priority": pd.Series(dtype="Int64"),
    })


def _stored_latency(folder: str | Path | None, prefix: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """Rollup latency rows of the minutes in [start, end), in the long form ``latency_trend`` reads."""
    if folder is None or not end > start:
        return _empty_minute_latency()
    return _minute_latency(ROLLUP_FILES.read(Path(folder), "rollup_latency", prefix, start.ceil("min"), end))


def _minute_latency(table: pa.Table) -> pd.DataFrame:
    """``rollup_latency`` rows in the long form ``latency_trend`` reads: a row per minute, priority and kind."""
    if table.num_rows == 0:
        return _empty_minute_latency()
    parts = []
    for kind in ("wait", "run"):
        names = [f"{kind}_{stat}" for stat in ("count", "p50_s", "p90_s", "p99_s", "max_s")]
        part = table.select(["minute", "priority", *names]).rename_columns(
            ["minute", "priority", "count", "p50_s", "p90_s", "p99_s", "max_s"])
        part = part.filter(pc.greater(part.column("count"), 0))
        parts.append(part.append_column("kind", pa.array(np.full(part.num_rows, kind), pa.string())))
    frame = pa.concat_tables(parts).to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    frame["minute"] = frame["minute"].astype(_UTC_NS)
    return frame


def _empty_minute_latency() -> pd.DataFrame:
    return pd.DataFrame({"minute": pd.Series(dtype=_UTC_NS), "priority": pd.Series(dtype="Int64"),
                         "count": pd.Series(dtype="Int64"),
                         **{name: pd.Series(dtype="float64") for name in ("p50_s", "p90_s", "p99_s", "max_s")},
                         "kind": pd.Series(dtype="object")})


class RollupFiles:
    """The rollup partitions of a history folder, each file read once per process.

    A file in the folder never changes once it appears (written aside, then
    renamed; compaction and retention replace or remove whole files), so a
    date partition is kept as one table, keyed by its files' names, sizes and
    modification times. While the monitor adds a file a minute to today's
    partition, a refresh reads only the files that appeared since the last
    one; a partition whose files were replaced (compacted) is read again. Only
    the date partitions of the asked range are listed. rollup_counts rows are
    kept summed by minute and event (the charts do not split counts by
    priority). At most ``max_rows`` rows are kept, least recently used out
    first. Thread-safe (every dashboard tab refreshes on its own thread).
    """

    _COLUMNS = {"rollup_counts": ["minute", "event", "count"], "rollup_latency": None}

    def __init__(self, max_rows: int = 5_000_000) -> None:
        self.max_rows = max_rows
        self._days: OrderedDict[tuple[str, str], tuple[frozenset[tuple[str, int, int]], pa.Table]] = OrderedDict()
        self._rows = 0
        self._lock = threading.Lock()

    def read(self, root: Path, table: str, prefix: str, start: pd.Timestamp, end: pd.Timestamp) -> pa.Table:
        """The rows of ``table`` whose minute is in [start, end), in no particular order."""
        folder = queue_dir(root, table, prefix)
        if not folder.is_dir():
            return self._empty(table)
        first, last = start.strftime("%Y-%m-%d"), (end - pd.Timedelta(1, "ns")).strftime("%Y-%m-%d")
        with os.scandir(folder) as entries:
            days = sorted(e.path for e in entries
                          if e.name.startswith("date=") and first <= e.name.removeprefix("date=") <= last)
        parts = [part for part in (self._day(day, table) for day in days) if part.num_rows]
        if not parts:
            return self._empty(table)
        rows = pa.concat_tables(parts)
        minute = rows.column("minute")
        keep = pc.and_(pc.greater_equal(minute, pa.scalar(start.value // 1000, _US_TYPE)),
                       pc.less(minute, pa.scalar(end.value // 1000, _US_TYPE)))
        return rows.filter(keep)

    def _day(self, day: str, table: str) -> pa.Table:
        with os.scandir(day) as entries:
            files = frozenset((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in entries
                              if e.name.endswith(PART_SUFFIX) and e.is_file())
        key = (day, table)
        with self._lock:
            kept = self._days.get(key)
            if kept is not None:
                self._days.move_to_end(key)
        if kept is not None and kept[0] == files:
            return kept[1]
        # Files only added since (the monitor appending): read just those; else (compacted) all again.
        parts, new = ([kept[1]], files - kept[0]) if kept is not None and kept[0] <= files else ([], files)
        names = [os.path.join(day, name) for name, _, _ in sorted(new)]
        if names:  # one scan over all new files: Arrow reads them in its own threads
            parts.append(self._read_files(names, table))
        merged = pa.concat_tables(parts).combine_chunks() if parts else self._empty(table)
        with self._lock:
            old = self._days.pop(key, None)
            self._rows += merged.num_rows - (old[1].num_rows if old else 0)
            self._days[key] = (files, merged)
            while self._rows > self.max_rows and len(self._days) > 1:
                _, (_, dropped) = self._days.popitem(last=False)
                self._rows -= dropped.num_rows
        return merged

    def _read_files(self, paths: list[str], table: str) -> pa.Table:
        schema = TABLES[table][0]
        rows = ds.dataset(paths, format="parquet", schema=schema).to_table(columns=self._COLUMNS[table])
        if table == "rollup_counts":
            rows = rows.group_by(["minute", "event"]).aggregate([("count", "sum")]).rename_columns(
                ["minute", "event", "count"])
        return rows

    def _empty(self, table: str) -> pa.Table:
        schema = TABLES[table][0]
        names = self._COLUMNS[table] or schema.names
        return pa.schema([schema.field(n) for n in names]).empty_table()

    def clear(self) -> None:
        with self._lock:
            self._days.clear()
            self._rows = 0


#: The process's one cache of rollup files (the dashboard's tabs and refreshes share it).
ROLLUP_FILES = RollupFiles()


# -- live rows, counted as the monitor's rollups count them ----------------------------------------


def _window(events: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """The rows received in [start, end)."""
    if events.empty:
        return events
    received = pd.to_datetime(events["received_at"], utc=True)
    return events.loc[((received >= start) & (received < end)).to_numpy()].reset_index(drop=True)


def _live_rollups(events: pd.DataFrame) -> tuple[pa.Table, pa.Table]:
    """The ``rollup_counts`` and ``rollup_latency`` tables of live events, by the monitor's own ``RollupBuilder``.

    The live minutes are measured exactly as the stored ones were, so a range
    reads the same whichever side of the split a minute falls on.
    """
    builder = RollupBuilder()
    builder.add(pa.table({
        "received_at": pa.array(_ns(events["received_at"]) // 1000).cast(_US_TYPE),
        "event": pa.array(events["event"], type=pa.string()),
        "job_id": pa.array(events["job_id"], type=pa.string()),
        "status": pa.array(events["status"], type=pa.string()),
        "priority": pa.array(events["priority"], type=pa.int64()),
    }))
    return builder.close(None)


# -- binning, in numpy ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CountRows:
    """Events per minute and event name, as arrays: minute start (ns), event code, count."""

    minute_ns: np.ndarray
    code: np.ndarray
    count: np.ndarray
    names: tuple[str, ...]

    def plus(self, other: _CountRows) -> _CountRows:
        names = tuple(sorted(set(self.names) | set(other.names)))
        recode = [np.array([names.index(n) for n in rows.names] or [0], dtype=np.int64)[rows.code]
                  for rows in (self, other)]
        return _CountRows(np.concatenate([self.minute_ns, other.minute_ns]), np.concatenate(recode),
                          np.concatenate([self.count, other.count]), names)

    def per_minute(self) -> pd.DataFrame:
        """Counts by minute (the minutes with rows, sorted) and event name (a column each, sorted)."""
        minutes, row = np.unique(self.minute_ns, return_inverse=True)
        table = np.zeros((len(minutes), len(self.names)), dtype=np.int64)
        np.add.at(table, (row, self.code), self.count)
        index = pd.DatetimeIndex(pd.to_datetime(minutes, utc=True), name="minute").astype(_UTC_NS)
        return pd.DataFrame(table, index=index, columns=pd.Index(list(self.names)))

    def binned(self, index: pd.DatetimeIndex, step: pd.Timedelta) -> pd.DataFrame:
        """One int64 column per charted event name, one row per bin of ``index``."""
        charted = [n for n in self.names if n not in _NOT_CHARTED]
        bins, n_names = len(index), len(self.names)
        table = np.zeros((bins, n_names), dtype=np.int64)
        if len(self.minute_ns) and bins:
            slot = (self.minute_ns - index[0].value) // step.value
            keep = (slot >= 0) & (slot < bins)
            sums = np.bincount(slot[keep] * n_names + self.code[keep], weights=self.count[keep],
                               minlength=bins * n_names)
            table = np.rint(sums).astype(np.int64).reshape(bins, n_names)
        columns = [self.names.index(n) for n in charted]
        return pd.DataFrame(table[:, columns], index=index, columns=pd.Index(charted))


def _stored_count_rows(folder: str | Path | None, prefix: str, start: pd.Timestamp, end: pd.Timestamp) -> _CountRows:
    if folder is None or not end > start:
        return _no_count_rows()
    return _count_rows(ROLLUP_FILES.read(Path(folder), "rollup_counts", prefix, start.ceil("min"), end))


def _count_rows(table: pa.Table) -> _CountRows:
    """``rollup_counts`` rows (minute, event, count; any other column ignored) as arrays.

    Rows without an event name are left out, as ``_raw_count_rows`` leaves out such events.
    """
    table = table.filter(pc.is_valid(table.column("event")))
    if table.num_rows == 0:
        return _no_count_rows()
    events = pc.dictionary_encode(table.column("event").combine_chunks())
    names = tuple(str(n) for n in events.dictionary.to_pylist())
    order = np.argsort(np.array(names, dtype=object))
    rank = np.empty(len(names), dtype=np.int64)
    rank[order] = np.arange(len(names))
    return _CountRows(table.column("minute").cast(pa.int64()).to_numpy() * 1000,
                      rank[events.indices.to_numpy(zero_copy_only=False)],
                      table.column("count").to_numpy(), tuple(sorted(names)))


def _raw_count_rows(events: pd.DataFrame) -> _CountRows:
    """One row per raw event, in its minute of receive time: the rollups' counts, counted apart."""
    received = _ns(events["received_at"])
    codes, names = pd.factorize(events["event"].astype("string"), sort=True)
    keep = codes >= 0
    return _CountRows(received[keep] // 60_000_000_000 * 60_000_000_000, codes[keep].astype(np.int64),
                      np.ones(int(keep.sum()), dtype=np.int64), tuple(str(n) for n in names))


def _no_count_rows() -> _CountRows:
    return _CountRows(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), ())


@dataclass(frozen=True)
class _LatencyRows:
    """Per-minute latency rows as arrays: minute (ns), level (0 high, 1 normal, 2 low), kind (0 wait,
    1 run), count, p50_s, p90_s, p99_s, max_s."""

    columns: dict[str, np.ndarray]

    def plus(self, other: _LatencyRows) -> _LatencyRows:
        return _LatencyRows({k: np.concatenate([v, other.columns[k]]) for k, v in self.columns.items()})

    def binned(self, first_bin: pd.Timestamp, step: pd.Timedelta) -> pd.DataFrame:
        """The latency trend frame (``LATENCY_TREND_COLUMNS``): one row per (bin, level, kind) with attempts."""
        c = self.columns
        if not len(c["minute"]):
            return _empty_trend()
        slot = (c["minute"] - first_bin.value) // step.value
        key = (slot * 3 + c["level"]) * 2 + c["kind"]
        keys, where = np.unique(key, return_inverse=True)
        weight = c["count"].astype(np.float64)
        total = np.bincount(where, weights=weight)
        out: dict[str, object] = {
            "time": pd.to_datetime(first_bin.value + keys // 6 * step.value, utc=True),
            "level": pd.array(np.array(analysis.PRIORITY_LEVELS, dtype=object)[keys // 2 % 3], dtype="string"),
            "kind": pd.array(np.array(["wait", "run"], dtype=object)[keys % 2], dtype="string"),
            "count": np.rint(total).astype(np.int64),
        }
        for name in _QUANTILES:
            out[name] = np.bincount(where, weights=c[name] * weight) / total
        highest = np.full(len(keys), -np.inf)
        np.maximum.at(highest, where, c["max_s"])
        out["max_s"] = highest
        return pd.DataFrame(out)


def _latency_rows(minutes: pd.DataFrame) -> _LatencyRows:
    """Arrays of per-minute latency rows (``_minute_latency``'s frame), unknown priorities left out."""
    rows = minutes[minutes["priority"].notna() & (minutes["count"] > 0)]
    priority = rows["priority"].to_numpy(dtype="int64")
    return _LatencyRows({
        "minute": _ns(rows["minute"]),
        "level": np.select([priority >= 2, priority == 1], [0, 1], 2),  # as Priority.level_of
        "kind": np.where(rows["kind"].to_numpy(dtype=object) == "wait", 0, 1),
        "count": rows["count"].to_numpy(dtype="int64"),
        **{name: rows[name].to_numpy(dtype="float64") for name in (*_QUANTILES, "max_s")},
    })


def _empty_trend() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in (
        ("time", _UTC_NS), ("level", "string"), ("kind", "string"), ("count", "int64"),
        ("p50_s", "float64"), ("p90_s", "float64"), ("p99_s", "float64"), ("max_s", "float64"))})


# -- bins -----------------------------------------------------------------------------------------------


def _freq(step: pd.Timedelta) -> str:
    return f"{int(step.total_seconds())}s"


def _bins(start: pd.Timestamp, end: pd.Timestamp, step: pd.Timedelta) -> pd.DatetimeIndex:
    """Every bin start from the bin holding ``start`` to the one holding the instant before ``end``."""
    return pd.date_range(start.floor(step), (end - pd.Timedelta(1, "ns")).floor(step), freq=step,
                         name="time").as_unit("ns")


def _complete_bins(table: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp, step: pd.Timedelta) -> pd.DataFrame:
    """A throughput frame over the whole range: zero rows where nothing happened."""
    table = table[(table.index >= start.floor(step)) & (table.index < end)]
    return table.reindex(_bins(start, end, step), fill_value=0).astype("int64")


def latency_trend(minutes: pd.DataFrame, step: pd.Timedelta) -> pd.DataFrame:
    """Per-minute latency rows (minute, priority, kind, count, p50_s ... max_s) in bins of ``step`` by level.

    Rows: one per (bin, level, kind) with attempts, sorted by time, level
    (high, normal, low) and kind (wait, run); quantiles are the count-weighted
    mean of the minutes' own (exact for one-minute bins and one priority per
    level), ``max_s`` the true maximum. Rows of an unknown priority (a job
    added before the monitor started) are left out.
    """
    if minutes.empty:
        return _empty_trend()
    first = pd.Timestamp(minutes["minute"].min()).floor(step)
    return _latency_rows(minutes).binned(first, step)


def _ns(times: pd.Series) -> np.ndarray:
    """UTC times as int64 nanoseconds since the epoch."""
    utc = pd.to_datetime(times, utc=True).dt.tz_convert(None).astype("datetime64[ns]")
    return utc.to_numpy().view(np.int64)


def _utc(value: object, name: str) -> pd.Timestamp:
    try:
        stamp = pd.Timestamp(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} must be a time (datetime or ISO text), got {value!r}") from exc
    if pd.isna(stamp):
        raise InvalidInputError(f"{name} must be a time, got {value!r}")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")

