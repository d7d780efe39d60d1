"""Per-minute rollups of a queue's events, built as batches of events stream in.

Two tables (``frames.dataset_layout``): ``rollup_counts``, events per minute
by event name and the job's priority, and ``rollup_latency``, wait and run
time quantiles per minute and priority. A long range (a week) is read from
these, not from the raw events.

What is measured, per attempt of a job (an attempt starts at a ``job_added``):
wait is from the ``job_added`` to the ``status_updated(running)`` after it,
counted in the minute the job started; run is from that ``running`` to the
first end (``status_updated`` completed/failed/cancelled, or ``job_completed``
/``job_failed``/``job_cancelled``), counted in the minute it ended. The job's
priority is the one of its last ``job_added`` seen. The jobs still open are
kept in memory between batches (a job added before the monitor started has
no wait and a null priority). A minute is written once a batch drained after
its end has been seen; stopping writes the minute in progress too, so a
minute cut by a restart has two rows: sum their counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from botrix_toolkit.core.errors import OperationError
from botrix_toolkit.frames.analysis import JobRows
from botrix_toolkit.frames.dataset_layout import ROLLUP_COUNTS_SCHEMA, ROLLUP_LATENCY_SCHEMA

_US_PER_MINUTE = 60_000_000
_ENDING_EVENTS = ("job_completed", "job_failed", "job_cancelled")
_ENDING_STATUSES = ("completed", "failed", "cancelled")
_QUANTILES = {"p50_s": 0.5, "p90_s": 0.9, "p99_s": 0.99}
_RESET = -1  # the time of an attempt step a job has not taken (no open attempt)
_MINUTE_TYPE = ROLLUP_COUNTS_SCHEMA.field("minute").type


@dataclass(frozen=True)
class _OpenJobs:
    """The jobs not ended yet, as parallel arrays: id, priority of the last add (``priority_known``
    False: null), the open attempt's added and started µs (-1: none)."""

    ids: pa.Array
    priority: np.ndarray
    priority_known: np.ndarray
    added: np.ndarray
    started: np.ndarray

    @classmethod
    def none(cls) -> _OpenJobs:
        return cls(pa.array([], type=pa.string()), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool),
                   np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))


class _Taken(NamedTuple):
    """What a batch adds: its count rows, wait and run samples, and the open jobs after it."""

    counts: pd.DataFrame
    waits: pd.DataFrame
    runs: pd.DataFrame
    open_jobs: _OpenJobs


@dataclass(frozen=True)
class RollupBatch:
    """A batch of events as ``RollupBuilder.prepare`` worked it out, to ``commit``."""

    generation: int  # the builder's state it was worked out from
    taken: _Taken | None  # None: an empty batch


class RollupBuilder:
    """Turns batches of one queue's events (``EVENTS_SCHEMA`` tables) into closed minutes.

    Vectorised: a batch's rows are grouped by job (``analysis.JobRows``, one
    stable sort of their job codes from Arrow's hash), and each job's state
    before each row is read from its last marked row before it; no Python
    runs per row or per job.
    """

    def __init__(self) -> None:
        self._open = _OpenJobs.none()
        self._counts: list[pd.DataFrame] = []  # minute, event, priority, count
        self._waits: list[pd.DataFrame] = []  # minute, priority, seconds
        self._runs: list[pd.DataFrame] = []
        self._generation = 0  # batches taken in: a prepared batch is for this state only

    @property
    def open_jobs(self) -> int:
        return len(self._open.ids)

    def add(self, events: pa.Table) -> None:
        """Take in a batch of events, in receive order, after every earlier batch."""
        self.commit(self.prepare(events))

    def prepare(self, events: pa.Table) -> RollupBatch:
        """What ``add`` would take in from ``events``, worked out without taking it in.

        Changes nothing, so it may run on another thread while the batch is
        written, and be thrown away when the write fails; ``commit`` it before
        anything else is prepared or added.
        """
        if events.num_rows == 0:
            return RollupBatch(self._generation, None)
        t = events.column("received_at").cast(pa.int64()).to_numpy()
        minute = t // _US_PER_MINUTE * _US_PER_MINUTE
        event = events.column("event").combine_chunks()
        status = events.column("status")
        is_add = _flag(pc.equal(event, "job_added"))
        is_status = _flag(pc.equal(event, "status_updated"))
        is_start = is_status & _flag(pc.equal(status, "running"))
        is_end = _flag(pc.is_in(event, value_set=pa.array(_ENDING_EVENTS))) \
            | (is_status & _flag(pc.is_in(status, value_set=pa.array(_ENDING_STATUSES))))
        priority_column = events.column("priority")
        priority = priority_column.fill_null(0).to_numpy()
        priority_given = _flag(pc.is_valid(priority_column))

        # Jobs: codes by Arrow's hash, memory found by id; rows grouped by job in receive order.
        encoded = events.column("job_id").combine_chunks().dictionary_encode()
        has_job = _flag(pc.is_valid(encoded.indices))
        codes = np.where(has_job, encoded.indices.fill_null(0).to_numpy(), -1)
        jobs = encoded.dictionary
        held = self._open
        memory = pc.index_in(jobs, value_set=held.ids)
        in_memory = _flag(pc.is_valid(memory))
        slot = memory.fill_null(0).to_numpy().astype(np.int64)
        known_priority = np.where(in_memory, held.priority[slot] if len(held.ids) else 0, 0)
        known_priority_given = in_memory & (held.priority_known[slot] if len(held.ids) else False)
        known_added = np.where(in_memory, held.added[slot] if len(held.ids) else _RESET, _RESET)
        known_started = np.where(in_memory, held.started[slot] if len(held.ids) else _RESET, _RESET)

        jobs_rows = JobRows(codes)  # each job's rows together, in receive order
        code = np.maximum(codes, 0)

        # The job's priority: its last job_added with a priority so far (this batch, else memory).
        last_add = jobs_rows.last_marked(is_add & priority_given)
        job_priority = np.where(last_add >= 0, priority[last_add], known_priority[code])
        job_priority_given = np.where(last_add >= 0, True, known_priority_given[code]) & has_job

        # Times of the open attempt: an add opens one (a start closes its wait), a start opens
        # the run (an add or an end resets it). The value a row finds is the job's last mark before it.
        opens_wait, opens_run = is_add | is_start, is_start | is_add | is_end
        added_value = np.where(is_add, t, _RESET)
        started_value = np.where(is_start, t, _RESET)
        wait_mark = jobs_rows.last_marked(opens_wait, before=True)
        run_mark = jobs_rows.last_marked(opens_run, before=True)
        added_before = np.where(wait_mark >= 0, added_value[wait_mark], known_added[code])
        started_before = np.where(run_mark >= 0, started_value[run_mark], known_started[code])
        added_before = np.where(has_job, added_before, _RESET)
        started_before = np.where(has_job, started_before, _RESET)

        waits = is_start & (added_before > 0)
        runs = is_end & (started_before > 0)
        label = pd.array(np.where(job_priority_given, job_priority, 0), dtype="Int64")
        label[~job_priority_given] = pd.NA
        wait_samples = pd.DataFrame({"minute": minute[waits], "priority": label[waits],
                                     "seconds": (t[waits] - added_before[waits]) / 1e6})
        run_samples = pd.DataFrame({"minute": minute[runs], "priority": label[runs],
                                    "seconds": (t[runs] - started_before[runs]) / 1e6})
        counted = pa.table({
            "minute": minute, "event": event,
            "priority": pa.array(job_priority, mask=~job_priority_given),
        }).group_by(["minute", "event", "priority"]).aggregate([([], "count_all")])
        count_rows = pd.DataFrame({  # one row per minute, event and priority: a few
            "minute": counted.column("minute").to_numpy(),
            "event": counted.column("event").to_pandas(),
            "priority": pd.array(counted.column("priority").to_pylist(), dtype="Int64"),
            "count": counted.column("count_all").to_numpy(),
        })

        # Remember each job's state after its last row here; jobs whose last step ended them leave.
        added_now = np.where(opens_wait, added_value, added_before)
        started_now = np.where(opens_run, started_value, started_before)
        keep = jobs_rows.last_rows() & has_job & ~is_end
        stay = pc.invert(pc.is_in(held.ids, value_set=jobs)).to_numpy(zero_copy_only=False) \
            if len(held.ids) else np.zeros(0, dtype=bool)
        open_jobs = _OpenJobs(
            pa.concat_arrays([held.ids.filter(pa.array(stay)), jobs.take(pa.array(code[keep]))]),
            np.concatenate([held.priority[stay], np.where(job_priority_given, job_priority, 0)[keep]]),
            np.concatenate([held.priority_known[stay], job_priority_given[keep]]),
            np.concatenate([held.added[stay], added_now[keep]]),
            np.concatenate([held.started[stay], started_now[keep]]),
        )
        return RollupBatch(self._generation, _Taken(count_rows, wait_samples, run_samples, open_jobs))

    def commit(self, batch: RollupBatch) -> None:
        """Take in a batch ``prepare`` worked out from the state as it still is."""
        if batch.generation != self._generation:
            raise OperationError("a rollup batch was prepared before another was taken in: it is stale")
        self._generation += 1
        if batch.taken is None:
            return
        self._counts.append(batch.taken.counts)
        self._waits.append(batch.taken.waits)
        self._runs.append(batch.taken.runs)
        self._open = batch.taken.open_jobs

    def close(self, before_us: int | None) -> tuple[pa.Table, pa.Table]:
        """Rollup rows of every minute that starts before ``before_us`` (None: all), forgotten after.

        Returns the ``rollup_counts`` and ``rollup_latency`` tables of those minutes.
        """
        counts, self._counts = _split(self._counts, before_us)
        waits, self._waits = _split(self._waits, before_us)
        runs, self._runs = _split(self._runs, before_us)
        if counts.empty:
            count_table = ROLLUP_COUNTS_SCHEMA.empty_table()
        else:
            summed = (counts.groupby(["minute", "event", "priority"], dropna=False, sort=True)["count"].sum()
                      .reset_index())
            count_table = pa.table({
                "minute": pa.array(summed["minute"].to_numpy(dtype="int64")).cast(_MINUTE_TYPE),
                "event": pa.array(summed["event"].astype(object), type=pa.string()),
                "priority": pa.array(summed["priority"].astype("Int64"), type=pa.int64()),
                "count": pa.array(summed["count"].to_numpy(dtype="int64")),
            }, schema=ROLLUP_COUNTS_SCHEMA)
        return count_table, _latency_table(waits, runs)


def _split(parts: list[pd.DataFrame], before_us: int | None) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """(rows of minutes before ``before_us``, the rest kept as one frame in a list)."""
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if frame.empty:
        return frame, []
    if before_us is None:
        return frame, []
    closed = frame["minute"] < before_us
    return frame[closed], [frame[~closed]]


def _latency_table(waits: pd.DataFrame, runs: pd.DataFrame) -> pa.Table:
    stats = []
    for kind, samples in (("wait", waits), ("run", runs)):
        if samples.empty:
            continue
        grouped = samples.groupby(["minute", "priority"], dropna=False, sort=True)["seconds"]
        table = pd.DataFrame({f"{kind}_count": grouped.size()})
        for name, q in _QUANTILES.items():
            table[f"{kind}_{name}"] = grouped.quantile(q)
        table[f"{kind}_max_s"] = grouped.max()
        stats.append(table)
    if not stats:
        return ROLLUP_LATENCY_SCHEMA.empty_table()
    merged = pd.concat(stats, axis=1).reset_index()
    columns = {}
    for field in ROLLUP_LATENCY_SCHEMA:
        if field.name == "minute":
            columns["minute"] = pa.array(merged["minute"].to_numpy(dtype="int64")).cast(field.type)
        elif field.name == "priority":
            columns["priority"] = pa.array(merged["priority"].astype("Int64"), type=pa.int64())
        elif field.name in merged:
            values = merged[field.name]
            columns[field.name] = pa.array(
                values.fillna(0).astype("int64") if field.name.endswith("count") else values.astype("float64"),
                type=field.type,
            )
        else:
            columns[field.name] = pa.nulls(len(merged), type=field.type) if not field.name.endswith("count") \
                else pa.array(np.zeros(len(merged), dtype="int64"))
    return pa.table(columns, schema=ROLLUP_LATENCY_SCHEMA)


def _flag(mask: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean Arrow result as a numpy bool array, null read as False."""
    return np.asarray(mask.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
