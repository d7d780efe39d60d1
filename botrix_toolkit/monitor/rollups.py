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

import numpy as np
import pandas as pd
import pyarrow as pa

from botrix_toolkit.frames.dataset_layout import ROLLUP_COUNTS_SCHEMA, ROLLUP_LATENCY_SCHEMA

_US_PER_MINUTE = 60_000_000
_ENDING_EVENTS = ("job_completed", "job_failed", "job_cancelled")
_ENDING_STATUSES = ("completed", "failed", "cancelled")
_QUANTILES = {"p50_s": 0.5, "p90_s": 0.9, "p99_s": 0.99}
_RESET = -1
_MINUTE_TYPE = ROLLUP_COUNTS_SCHEMA.field("minute").type  # marks "no open attempt" in the forward-filled times


class RollupBuilder:
    """Turns batches of one queue's events (``EVENTS_SCHEMA`` tables) into closed minutes."""

    def __init__(self) -> None:
        # job_id -> [priority or <NA>, added µs or -1, started µs or -1], jobs not ended yet
        self._jobs = pd.DataFrame(
            {"priority": pd.Series(dtype="Int64"), "added": pd.Series(dtype="int64"),
             "started": pd.Series(dtype="int64")},
            index=pd.Index([], dtype="string", name="job_id"),
        )
        self._counts: list[pd.DataFrame] = []  # minute, event, priority, count
        self._waits: list[pd.DataFrame] = []  # minute, priority, seconds
        self._runs: list[pd.DataFrame] = []

    @property
    def open_jobs(self) -> int:
        return len(self._jobs)

    def add(self, events: pa.Table) -> None:
        """Take in a batch of events, in receive order, after every earlier batch."""
        if events.num_rows == 0:
            return
        rows = pd.DataFrame({
            "t": events.column("received_at").cast(pa.int64()).to_numpy(zero_copy_only=False),
            "job_id": events.column("job_id").to_pandas().astype("string"),
            "event": events.column("event").to_pandas().astype("string"),
            "status": events.column("status").to_pandas().astype("string"),
            "priority": events.column("priority").to_pandas().astype("Int64"),
        })
        rows["minute"] = rows["t"] // _US_PER_MINUTE * _US_PER_MINUTE
        known = self._jobs.reindex(rows["job_id"])
        is_add = (rows["event"] == "job_added").to_numpy()
        is_start = ((rows["event"] == "status_updated") & (rows["status"] == "running")).fillna(False).to_numpy()
        is_end = (rows["event"].isin(_ENDING_EVENTS)
                  | ((rows["event"] == "status_updated") & rows["status"].isin(_ENDING_STATUSES))
                  ).fillna(False).to_numpy()

        # The job's priority: its last job_added so far (this batch, else memory).
        priority = rows["priority"].where(is_add).groupby(rows["job_id"], sort=False).ffill()
        rows["job_priority"] = priority.fillna(pd.Series(known["priority"].to_numpy(), index=rows.index))

        # Times of the open attempt before each row: marks forward-filled per job, memory first.
        t = rows["t"].to_numpy()
        added_mark = pd.Series(np.where(is_add, t, np.where(is_start, _RESET, np.nan)), index=rows.index)
        started_mark = pd.Series(np.where(is_start, t, np.where(is_add | is_end, _RESET, np.nan)),
                                 index=rows.index)
        added_now = added_mark.groupby(rows["job_id"], sort=False).ffill()
        started_now = started_mark.groupby(rows["job_id"], sort=False).ffill()
        added_before = added_now.groupby(rows["job_id"], sort=False).shift(1)
        started_before = started_now.groupby(rows["job_id"], sort=False).shift(1)
        added_before = added_before.fillna(pd.Series(known["added"].to_numpy(), index=rows.index))
        started_before = started_before.fillna(pd.Series(known["started"].to_numpy(), index=rows.index))

        waits = is_start & (added_before > 0).to_numpy()
        runs = is_end & (started_before > 0).to_numpy()
        self._waits.append(pd.DataFrame({
            "minute": rows["minute"][waits], "priority": rows["job_priority"][waits],
            "seconds": (t[waits] - added_before[waits]) / 1e6}))
        self._runs.append(pd.DataFrame({
            "minute": rows["minute"][runs], "priority": rows["job_priority"][runs],
            "seconds": (t[runs] - started_before[runs]) / 1e6}))
        self._counts.append(
            rows.groupby(["minute", "event", "job_priority"], dropna=False, sort=False)
            .size().rename("count").reset_index().rename(columns={"job_priority": "priority"})
        )

        # Remember each job's state after this batch; jobs whose last step ended them leave.
        last = pd.DataFrame({
            "job_id": rows["job_id"], "priority": rows["job_priority"],
            "added": added_now.fillna(pd.Series(known["added"].to_numpy(), index=rows.index)),
            "started": started_now.fillna(pd.Series(known["started"].to_numpy(), index=rows.index)),
            "ended": is_end,
        }).drop_duplicates("job_id", keep="last").set_index("job_id")
        jobs = self._jobs.drop(index=last.index, errors="ignore")
        still_open = last[~last["ended"]].drop(columns="ended")
        still_open = still_open.astype({"added": "float64", "started": "float64"}).fillna(_RESET)
        self._jobs = pd.concat([jobs, still_open.astype({"added": "int64", "started": "int64"})])

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
