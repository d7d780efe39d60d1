"""Throughput, latency and queue-depth tables: events or stats frame in, frame out.

The inputs are the frames of ``event_frames.py``: the *events frame* (one row
per pub/sub message, in receive order) and the *stats frame* (one row per
``get_queue_stats`` snapshot). Everything here is vectorised (group-wise shifts
per job, no Python loop per row), so a million events take a few seconds.

How the event sequence is read (docs/wire-format.md): every operation publishes a
``status_updated`` and usually a second, named event for the same change
(``status_updated(completed)`` + ``job_completed``). Counting both would count
the job twice, so each row is turned into the job *state* it implies and only a
change of state counts. ``status_updated`` is the canonical signal (the Go
``UpdateJobStatus`` can complete a job without ``job_completed``); a named
terminal event still counts when no ``status_updated`` announced it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd

from botrix_toolkit.core.errors import InvalidInputError
from botrix_toolkit.core.models import Priority

logger = logging.getLogger(__name__)

PRIORITY_LEVELS: tuple[str, ...] = ("high", "normal", "low")
# Ordered so that high > normal > low in comparisons and sorts.
PRIORITY_LABEL_DTYPE = pd.CategoricalDtype(["low", "normal", "high"], ordered=True)
THROUGHPUT_COLUMNS: tuple[str, ...] = (
    "added", "started", "completed", "failed", "cancelled", "requeued", "recovered",
)
LATENCY_DTYPES: dict[str, Any] = {  # Any: pandas-stubs types each dtype name as its own Literal
    "job_id": "string", "attempt": "int64", "priority": "Int64",
    "priority_label": PRIORITY_LABEL_DTYPE, "added_at": "datetime64[ns, UTC]",
    "started_at": "datetime64[ns, UTC]", "ended_at": "datetime64[ns, UTC]",
    "wait_s": "float64", "run_s": "float64", "outcome": "string",
}
QUEUE_DEPTH_COLUMNS: tuple[str, ...] = ("high", "normal", "low", "processing", "total")
_STATS_TO_DEPTH = {"high_priority": "high", "normal_priority": "normal",
                   "low_priority": "low", "processing_count": "processing"}
# The job state a named event implies (status_updated carries its own).
_EVENT_STATE = {"job_completed": "completed", "job_failed": "failed",
                         "job_cancelled": "cancelled", "job_added": "pending"}
_UTC_NS: Final = "datetime64[ns, UTC]"
_NAT_NS: Final = np.iinfo(np.int64).min  # NaT as an int64 of nanoseconds
# Working text dtype: missing is NaN, so comparisons give plain bool (False where missing).
_TEXT = pd.StringDtype(na_value=np.nan)


def priority_label(priority: pd.Series) -> pd.Series:
    """The level each priority counts in (ordered categorical high > normal > low).

    Above 2 is high, below 0 is low, as in ``Priority.label_of``; <NA> stays <NA>.
    """
    values = pd.Series(priority, copy=False).astype("Int64")
    labels = {int(v): Priority.label_of(int(v)) for v in values.dropna().unique()}
    return values.map(labels).astype(PRIORITY_LABEL_DTYPE)


def require_columns(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    """An InvalidInputError naming the first of ``columns`` that ``frame`` (the ``what`` frame) lacks."""
    for column in columns:
        if column not in frame.columns:
            raise InvalidInputError(f"{what} frame has no column {column!r}; "
                                    f"it has {list(frame.columns)}")


def event_times_ns(events: pd.DataFrame) -> np.ndarray:
    """Per row, its receive time (sub-second) where known, else the message's whole-second time.

    int64 nanoseconds since the Unix epoch, ``_NAT_NS`` (NaT's int64) where neither is known.
    """
    if "received_at" not in events.columns and "timestamp" not in events.columns:
        raise InvalidInputError("events frame has no column 'received_at' or 'timestamp'")
    times = np.full(len(events), _NAT_NS, dtype=np.int64)
    for column in ("timestamp", "received_at"):  # the later one wins where present
        if column in events.columns:
            own = pd.DatetimeIndex(pd.to_datetime(events[column], utc=True)).as_unit("ns").asi8
            times = np.where(own != _NAT_NS, own, times)
    return times


def _event_times(events: pd.DataFrame) -> pd.Series:
    """``event_times_ns`` as a UTC datetime column on the frame's index."""
    return pd.Series(event_times_ns(events).view("M8[ns]"), index=events.index).dt.tz_localize("UTC")


class TextCodes:
    """Strings as small int codes that stay the same as more strings are seen (-1: missing).

    ``classify_codes`` reads event names and statuses as codes into one such
    list; a caller that reads chunk after chunk keeps one for all of them.
    """

    def __init__(self) -> None:
        self.names: list[str] = []
        self._codes: dict[str, int] = {}

    def code(self, name: str) -> int:
        found = self._codes.get(name)
        if found is None:
            found = self._codes[name] = len(self.names)
            self.names.append(name)
        return found

    def encode(self, column: pd.Series) -> np.ndarray:
        """The column's codes (int64, -1 where missing)."""
        codes, uniques = pd.factorize(column)
        table = np.array([self.code(str(name)) for name in uniques] + [-1], dtype=np.int64)
        return table[codes]

    def lookup(self, value_of: Callable[[str], int], missing: int) -> np.ndarray:
        """``value_of(name)`` per code, indexable by codes (``missing`` at code -1)."""
        return np.array([value_of(name) for name in self.names] + [missing], dtype=np.int64)


class JobRows:
    """A frame's rows grouped by job code with one stable sort: each job's rows together, in frame order.

    Rows without a job (code -1) make one group of their own, as in a groupby
    on the codes. The methods answer per row (frame order) with frame positions.
    """

    def __init__(self, job: np.ndarray) -> None:
        self.order = np.argsort(job, kind="stable")
        size = len(job)
        grouped = job[self.order]
        starts = np.ones(size, dtype=bool)
        starts[1:] = grouped[1:] != grouped[:-1]
        ends = np.ones(size, dtype=bool)
        ends[:-1] = starts[1:]
        self._sorted = np.arange(size)
        # Per sorted row: where its job's rows begin and end (sorted positions, end inclusive).
        self._first = np.maximum.accumulate(np.where(starts, self._sorted, 0))
        self._last = np.minimum.accumulate(np.where(ends, self._sorted, size)[::-1])[::-1]

    def last_marked(self, marked: np.ndarray, *, before: bool = False) -> np.ndarray:
        """Each row's job's last marked row up to the row (strictly before it if ``before``), or -1."""
        running = np.maximum.accumulate(np.where(marked[self.order], self._sorted, -1))
        if before:
            running = _shifted(running, 1, -1)
        return self._in_frame_order(running, running >= self._first)

    def last_rows(self) -> np.ndarray:
        """Whether each row is its job's last (frame order)."""
        out = np.empty(len(self.order), dtype=bool)
        out[self.order] = self._sorted == self._last
        return out

    def next_marked(self, marked: np.ndarray) -> np.ndarray:
        """Each row's job's next marked row strictly after the row, or -1."""
        size = len(self.order)
        running = np.minimum.accumulate(np.where(marked[self.order], self._sorted, size)[::-1])[::-1]
        running = _shifted(running, -1, size)
        return self._in_frame_order(running, running <= self._last)

    def _in_frame_order(self, sorted_at: np.ndarray, found: np.ndarray) -> np.ndarray:
        out = np.empty(len(self.order), dtype=np.int64)
        out[self.order] = np.where(found, self.order[np.clip(sorted_at, 0, max(len(self.order) - 1, 0))], -1)
        return out


def _shifted(values: np.ndarray, by: int, fill: int) -> np.ndarray:
    out = np.full_like(values, fill)
    if by > 0:
        out[by:] = values[:-by]
    else:
        out[:by] = values[-by:]
    return out


@dataclass(frozen=True)
class RowClasses:
    """What ``classify_codes`` reads each row to mean (arrays in frame order; see ``classify_events``)."""

    status: np.ndarray  # the status codes, "processing" read as "running"
    state: np.ndarray  # text code of the job state the row implies, -1: none
    transition: np.ndarray
    requeue_failure: np.ndarray
    add_kind: np.ndarray  # index into ADD_KINDS on job_added rows, -1 elsewhere


ADD_KINDS: tuple[str, ...] = ("added", "requeued", "recovered")
# What a row's step (its event, or status_<status> for a status_updated) is to the rule.
_OTHER_STEP, _ADDED_STEP, _RECOVERED_STEP, _FAILED_STEP, _PENDING_STEP = range(5)
_STEP_OF = {"job_added": _ADDED_STEP, "job_recovered": _RECOVERED_STEP,
            "status_failed": _FAILED_STEP, "status_pending": _PENDING_STEP}


def classify_codes(event: np.ndarray, status: np.ndarray, jobs: JobRows, text: TextCodes) -> RowClasses:
    """``classify_events`` on codes: event and status codes into ``text``, rows grouped by ``jobs``."""
    running, processing = text.code("running"), text.code("processing")
    implied = {name: text.code(state) for name, state in _EVENT_STATE.items()}
    status = np.where(status == processing, running, status)
    is_update = event == text.code("status_updated")
    state = np.where(is_update, status, text.lookup(lambda name: implied.get(name, -1), missing=-1)[event])
    has_state = state >= 0
    previous = jobs.last_marked(has_state, before=True)
    transition = has_state & ((previous < 0) | (state[previous] != state))

    # Context of a job_added: the step before it, ignoring the status_updated(pending)
    # that every add publishes first. failed -> requeue, job_recovered -> recovery.
    status_step = text.lookup(lambda name: _STEP_OF.get("status_" + name, _OTHER_STEP), missing=_OTHER_STEP)
    event_step = text.lookup(lambda name: _STEP_OF.get(name, _OTHER_STEP), missing=_OTHER_STEP)
    step = np.where(is_update, status_step[status], event_step[event])
    context = step != _PENDING_STEP
    before = jobs.last_marked(context, before=True)
    after = jobs.next_marked(context)
    step_before = np.where(before >= 0, step[before], _OTHER_STEP)
    step_after = np.where(after >= 0, step[after], _OTHER_STEP)
    kind = np.select([step_before == _RECOVERED_STEP, step_before == _FAILED_STEP],
                     [ADD_KINDS.index("recovered"), ADD_KINDS.index("requeued")], ADD_KINDS.index("added"))
    return RowClasses(
        status=status, state=state, transition=transition,
        requeue_failure=(step == _FAILED_STEP) & (step_after == _ADDED_STEP),
        add_kind=np.where(step == _ADDED_STEP, kind, -1),
    )


def classify_events(events: pd.DataFrame) -> pd.DataFrame:
    """One row per event (frame order) with what it means for its job.

    The reading that ``throughput`` and ``latency`` count from, public so that an
    incremental counter (``monitor.job_tracker``) counts exactly as they do
    (through ``classify_codes``, the same rule on arrays).

    Columns: time, job_id, event, status, job (int code), state (the job state the row
    implies, or missing), transition (state differs from the job's previous state),
    requeue_failure (a failed that the next step re-adds), add_kind (added /
    requeued / recovered on job_added rows).
    """
    require_columns(events, ("event", "job_id", "status"), "events")
    text = TextCodes()
    job_id = events["job_id"].astype(_TEXT)
    job = pd.factorize(job_id)[0]
    classes = classify_codes(text.encode(events["event"]), text.encode(events["status"]), JobRows(job), text)
    names = np.array([*text.names, np.nan], dtype=object)  # code -1 picks the trailing NaN
    kinds = np.array([*ADD_KINDS, np.nan], dtype=object)
    return pd.DataFrame({
        "time": _event_times(events).array,
        "job_id": job_id.array,
        "event": events["event"].astype(_TEXT).array,
        "status": pd.array(names[classes.status], dtype=_TEXT),
        "job": job,
        "state": pd.array(names[classes.state], dtype=_TEXT),
        "transition": classes.transition,
        "add_kind": pd.array(kinds[classes.add_kind], dtype=_TEXT),
        "requeue_failure": classes.requeue_failure,
    })


def throughput(events: pd.DataFrame, freq: str = "1s") -> pd.DataFrame:
    """Jobs per time bin, each state change of each job counted once.

    Index: ``time`` (UTC), the start of every bin of length ``freq`` from the first
    to the last event, with zero rows where nothing happened. Columns (int64):
    added (a new job, or an id reused after it ended), started (taken by a worker),
    completed, failed (final failures only), cancelled, requeued (failed and put
    back in the queue), recovered (a stalled job put back). Bins use ``received_at``
    where present (sub-second), else the message ``timestamp``.
    """
    rows = classify_events(events)
    is_state = rows["transition"].to_numpy()
    state = rows["state"]
    flags = {
        "added": rows["add_kind"] == "added",
        "started": is_state & (state == "running"),
        "completed": is_state & (state == "completed"),
        "failed": is_state & (state == "failed") & ~rows["requeue_failure"],
        "cancelled": is_state & (state == "cancelled"),
        "requeued": rows["add_kind"] == "requeued",
        "recovered": rows["add_kind"] == "recovered",
    }
    # ndarray & Series is a Series at runtime (pandas takes the operator); the stubs say ndarray.
    counted = pd.DataFrame({name: flag.fillna(False).astype("int64")  # type: ignore[attr-defined]
                            for name, flag in flags.items()})
    bins = rows["time"].dt.floor(freq)
    table = counted.groupby(bins.rename("time")).sum()
    if bins.notna().any():
        full = pd.date_range(bins.min(), bins.max(), freq=freq, name="time").as_unit("ns")
    else:
        full = pd.DatetimeIndex([], dtype=_UTC_NS, name="time", freq=freq)
    table = table.reindex(full, fill_value=0).astype("int64")
    return table[list(THROUGHPUT_COLUMNS)]


def latency(events: pd.DataFrame) -> pd.DataFrame:
    """One row per attempt: how long each job waited in the queue and ran.

    An attempt starts at a ``job_added`` (a requeued job served twice has attempts
    1 and 2; an id reused after it ended also counts on). Events of a job seen
    before its first ``job_added`` in the history are ignored. Columns: job_id,
    attempt (1-based), priority (Int64, from the job_added), priority_label,
    added_at / started_at / ended_at (UTC, NaT when not yet), wait_s (seconds from
    added to running, NaN if never started), run_s (seconds from running to the
    end, NaN if not ended or never started), outcome (completed, failed, requeued,
    cancelled, recovered, or <NA> while still queued or running). Sorted by
    added_at.
    """
    require_columns(events, ("priority",), "events")
    rows = classify_events(events)
    rows["priority"] = pd.Series(events["priority"], copy=False).astype("Int64").array
    rows["attempt"] = (rows["event"] == "job_added").astype("int64").groupby(rows["job"]).cumsum()
    rows = rows[rows["attempt"] > 0]
    keys = ["job", "attempt"]

    adds = rows[rows["event"] == "job_added"].set_index(keys)
    out = adds[["job_id", "priority"]].copy()
    out["added_at"] = adds["time"]
    starts = rows[rows["transition"] & (rows["state"] == "running")]
    out["started_at"] = starts.groupby(keys)["time"].first()

    ends = rows[(rows["transition"] & rows["state"].isin(["completed", "failed", "cancelled"]))
                | (rows["event"] == "job_recovered")].copy()
    outcome = ends["state"].where(ends["event"] != "job_recovered", "recovered")
    ends["outcome"] = outcome.where(~ends["requeue_failure"], "requeued")
    first_end = ends.groupby(keys)[["time", "outcome"]].first()
    out["ended_at"] = first_end["time"]
    out["outcome"] = first_end["outcome"]

    out["started_at"] = out["started_at"].astype(_UTC_NS)
    out["ended_at"] = out["ended_at"].astype(_UTC_NS)
    second = pd.Timedelta(seconds=1)
    # timedeltas / 1 s are float seconds; the stubs type a difference of datetime columns as Series[Any]
    out["wait_s"] = (out["started_at"] - out["added_at"]) / second  # type: ignore[operator]
    out["run_s"] = (out["ended_at"] - out["started_at"]) / second  # type: ignore[operator]
    out["priority_label"] = priority_label(out["priority"])
    out = out.reset_index().sort_values(["added_at", "job_id", "attempt"], kind="stable")
    return out[list(LATENCY_DTYPES)].astype(LATENCY_DTYPES).reset_index(drop=True)


def _group_rows(frame: pd.DataFrame, by: str) -> tuple[list[object], pd.Series]:
    """Row labels for a by-level table (+ "all") and the key of each input row."""
    keys = frame[by]
    if by == "priority_label":
        return [*PRIORITY_LEVELS, "all"], keys.astype("string")
    return [*sorted(keys.dropna().unique().tolist(), key=str), "all"], keys


def summary(latency_frame: pd.DataFrame, by: str = "priority_label") -> pd.DataFrame:
    """Wait and run time statistics per group, plus an "all" row.

    Index: the values of ``by`` (for priority_label always high, normal, low, then
    all). Columns: wait_count, wait_mean_s, wait_p50_s, wait_p90_s, wait_p99_s,
    wait_max_s and the same for run_ (seconds; counts are int64 and only count
    attempts with that duration known; percentiles are linearly interpolated).
    """
    require_columns(latency_frame, ("wait_s", "run_s", by), "latency")
    labels, keys = _group_rows(latency_frame, by)
    columns: dict[str, pd.Series] = {}
    for metric, prefix in (("wait_s", "wait"), ("run_s", "run")):
        values = latency_frame[metric].astype("float64")
        groups = {label: values if label == "all" else values[keys == label] for label in labels}
        stats = {
            "count": lambda v: int(v.count()),
            "mean_s": lambda v: v.mean(),
            "p50_s": lambda v: v.quantile(0.50),
            "p90_s": lambda v: v.quantile(0.90),
            "p99_s": lambda v: v.quantile(0.99),
            "max_s": lambda v: v.max(),
        }
        for stat, compute in stats.items():
            columns[f"{prefix}_{stat}"] = pd.Series(
                [compute(groups[label].dropna()) for label in labels],
                index=pd.Index(labels, name=by),
                dtype="int64" if stat == "count" else "float64",
            )
    return pd.DataFrame(columns)


def failure_rate(latency_frame: pd.DataFrame, by: str = "priority_label") -> pd.DataFrame:
    """How attempts ended, per group plus an "all" row.

    Columns (int64 counts of attempts): attempts, completed, failed, requeued,
    cancelled, recovered, unfinished; failure_rate (float): failed / (completed +
    failed), the share of finished jobs that failed for good (NaN when none ended).
    """
    require_columns(latency_frame, ("outcome", by), "latency")
    labels, keys = _group_rows(latency_frame, by)
    outcome = latency_frame["outcome"].astype("string").fillna("unfinished")
    table = pd.crosstab(keys, outcome).reindex(index=labels[:-1], fill_value=0)
    table.loc["all"] = table.sum()
    names = ["completed", "failed", "requeued", "cancelled", "recovered", "unfinished"]
    table = table.reindex(columns=names, fill_value=0).astype("int64")
    table.insert(0, "attempts", table.sum(axis=1))
    finished = (table["completed"] + table["failed"]).astype("float64")
    table["failure_rate"] = table["failed"] / finished.where(finished > 0)
    table.index.name, table.columns.name = by, None
    return table


def busiest(throughput_frame: pd.DataFrame, n: int = 5, column: str = "completed") -> pd.DataFrame:
    """The ``n`` bins with the most ``column`` events, largest first (rows of the input)."""
    require_columns(throughput_frame, (column,), "throughput")
    return throughput_frame.nlargest(n, column, keep="first")


def queue_depth(stats_snapshots: pd.DataFrame) -> pd.DataFrame:
    """Queue depth over time from stats-frame rows (concatenated snapshots).

    Index: ``timestamp`` (UTC, sorted, a repeated timestamp keeps its last row).
    Columns (int64): high, normal, low (pending jobs per level), processing (jobs
    taken by workers), total (high + normal + low + processing).
    """
    require_columns(stats_snapshots, ("timestamp", *_STATS_TO_DEPTH), "stats")
    depth = stats_snapshots[["timestamp", *_STATS_TO_DEPTH]].rename(columns=_STATS_TO_DEPTH)
    depth["timestamp"] = pd.to_datetime(depth["timestamp"], utc=True).astype(_UTC_NS)
    depth = depth.sort_values("timestamp", kind="stable")
    depth = depth.drop_duplicates("timestamp", keep="last").set_index("timestamp")
    depth = depth.astype("int64")
    depth["total"] = depth[["high", "normal", "low", "processing"]].sum(axis=1).astype("int64")
    return depth[list(QUEUE_DEPTH_COLUMNS)]
