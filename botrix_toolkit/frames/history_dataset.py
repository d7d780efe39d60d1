"""Reading the history folder ``botrix monitor`` writes (layout: ``frames.dataset_layout``).

``open_dataset(DIR)`` is a ``pyarrow.dataset.Dataset`` over the raw events,
for engines that scan it themselves; ``load_history(DIR, start, end, prefix)``
(also ``EventRecorder.load(DIR, ...)``) is the ``RecordedEvents`` a saved
file gives, for a time range, reading only the partitions that range touches;
``read_rollups(DIR, ...)`` returns the per-minute rollups for long ranges.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, TypeAlias

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from botrix_toolkit.core.errors import InvalidInputError
from botrix_toolkit.core.keys import QueueKeys
from botrix_toolkit.frames.dataset_layout import TABLES, decode_prefix, encode_prefix, partitioning_schema
from botrix_toolkit.frames.event_frames import EVENT_COLUMNS, empty_frame, malformed_frame_from
from botrix_toolkit.frames.history import RecordedEvents, _events_from_table

TimeLike: TypeAlias = str | datetime | pd.Timestamp | None
# int64 columns with nulls stay exact integers (pandas would make them float64).
_NULLABLE_INTS = {pa.int64(): pd.Int64Dtype()}
_TIME_COLUMN = {"events": "received_at", "malformed": "received_at", "gaps": "start",
                "rollup_counts": "minute", "rollup_latency": "minute"}


def open_dataset(path: str | Path, table: str = "events") -> ds.Dataset:
    """One table of the history folder as a pyarrow Dataset, with columns queue, date (and hour).

    ``table``: events (default), malformed, gaps, rollup_counts or rollup_latency.
    ``queue`` is the decoded prefix. Filters on queue, date and hour skip
    whole folders.
    """
    root = Path(path)
    if table not in TABLES:
        raise InvalidInputError(f"table must be one of {sorted(TABLES)}, got {table!r}")
    if not root.is_dir():
        raise InvalidInputError(f"history folder {str(root)!r} does not exist or is not a folder")
    schema, hourly = TABLES[table]
    partitioning = ds.partitioning(partitioning_schema(hourly), flavor="hive")
    folder = root / table
    if not folder.is_dir():
        return ds.dataset(_full_schema(schema, hourly).empty_table())
    return ds.dataset(folder, format="parquet", schema=_full_schema(schema, hourly), partitioning=partitioning)


def _full_schema(schema: pa.Schema, hourly: bool) -> pa.Schema:
    for field in partitioning_schema(hourly):
        schema = schema.append(field)
    return schema


def queues(path: str | Path) -> list[str]:
    """The queue prefixes that have a folder in the history, sorted."""
    found = set()
    for table in TABLES:
        for folder in (Path(path) / table).glob("queue=*"):
            found.add(decode_prefix(folder.name.removeprefix("queue=")))
    return sorted(found)


def _utc(value: TimeLike, name: str) -> pd.Timestamp | None:
    if value is None:
        return None
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(f"{name} must be a time (datetime or ISO text), got {value!r}") from exc
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _filter(table: str, prefix: str, start: pd.Timestamp | None, end: pd.Timestamp | None) -> ds.Expression:
    """Rows of ``prefix`` with time in [start, end), with partition filters that skip folders."""
    _, hourly = TABLES[table]
    expr = ds.field("queue") == prefix
    column = ds.field(_TIME_COLUMN[table])
    if start is not None:
        day = start.strftime("%Y-%m-%d")
        keep = ds.field("date") > day
        keep = keep | ((ds.field("date") == day) & (ds.field("hour") >= start.hour)) if hourly else \
            keep | (ds.field("date") == day)
        expr = expr & keep & (column >= pa.scalar(start.value // 1000, pa.timestamp("us", tz="UTC")))
    if end is not None:
        day = end.strftime("%Y-%m-%d")
        keep = ds.field("date") < day
        keep = keep | ((ds.field("date") == day) & (ds.field("hour") <= end.hour)) if hourly else \
            keep | (ds.field("date") == day)
        expr = expr & keep & (column < pa.scalar(end.value // 1000, pa.timestamp("us", tz="UTC")))
    return expr


def _read(path: str | Path, table: str, prefix: str, start: TimeLike, end: TimeLike) -> pa.Table:
    data = open_dataset(path, table)
    names = list(TABLES[table][0].names)
    result = data.to_table(columns=names, filter=_filter(table, prefix, _utc(start, "start"), _utc(end, "end")))
    # Files sort by their first row; sort again so the order never depends on the scan.
    return result.sort_by([(_TIME_COLUMN[table], "ascending")]) if result.num_rows else result


def _one_queue(path: str | Path, prefix: str | None) -> str:
    if prefix is not None:
        return prefix
    found = queues(path)
    if len(found) != 1:
        raise InvalidInputError(
            f"history {str(path)!r} holds {len(found)} queues {found}: pass prefix= to choose one"
        )
    return found[0]


def load_history(path: str | Path, start: TimeLike = None, end: TimeLike = None,
                 prefix: str | None = None) -> RecordedEvents:
    """The recording of one queue between ``start`` (included) and ``end`` (excluded), as saved files give.

    ``prefix`` may be left out when the folder holds one queue. Times are UTC
    (a naive time is taken as UTC). Events, malformed messages and gaps that
    overlap the range are read from the partitions of that range only.
    """
    prefix = _one_queue(path, prefix)
    events = _read(path, "events", prefix, start, end).to_pandas(types_mapper=_NULLABLE_INTS.get)
    malformed = _read(path, "malformed", prefix, start, end).to_pandas()
    gaps = _read(path, "gaps", prefix, None, end).to_pandas()
    start_ts = _utc(start, "start")
    if start_ts is not None and len(gaps):
        gaps = gaps[gaps["end"] > start_ts]
    frame = _events_from_table(events, Path(path)) if len(events) else empty_frame(EVENT_COLUMNS)
    gap_list: list[dict[str, Any]] = [
        {"start": row.start, "end": row.end, "duration_s": float(row.duration_s), "reason": row.reason}
        for row in gaps.itertuples(index=False)
    ]
    bad = malformed_frame_from(
        malformed["received_at"].astype("datetime64[ns, UTC]").array.asi8.tolist() if len(malformed) else [],
        malformed["raw"].tolist() if len(malformed) else [],
        malformed["reason"].tolist() if len(malformed) else [],
    )
    counters = {"received": len(frame) + len(bad), "dropped_oldest": 0, "malformed": len(bad),
                "gaps": len(gap_list), "running": False, "connected": False}
    return RecordedEvents(events=frame, gap_list=gap_list, malformed_events=bad, counters=counters,
                          channel=QueueKeys(prefix).updates)


def read_rollups(path: str | Path, kind: str = "counts", start: TimeLike = None, end: TimeLike = None,
                 prefix: str | None = None) -> pd.DataFrame:
    """Per-minute rollups of one queue: ``kind`` "counts" or "latency", minutes in [start, end).

    counts: minute, event, priority, count (rows of one minute cut by a
    restart are summed here). latency: minute, priority, wait_/run_ count,
    p50_s, p90_s, p99_s, max_s (a minute cut by a restart has two rows).
    """
    if kind not in ("counts", "latency"):
        raise InvalidInputError(f"kind must be 'counts' or 'latency', got {kind!r}")
    prefix = _one_queue(path, prefix)
    frame = _read(path, f"rollup_{kind}", prefix, start, end).to_pandas(types_mapper=_NULLABLE_INTS.get)
    frame["priority"] = frame["priority"].astype("Int64")
    if kind == "counts" and len(frame):
        frame = (frame.groupby(["minute", "event", "priority"], dropna=False, sort=True)["count"]
                 .sum().reset_index())
    return frame.reset_index(drop=True)


def last_received_at(path: str | Path, prefix: str) -> pd.Timestamp | None:
    """The receive time of the queue's last event on disk (from its newest partition only), or None."""
    folder = Path(path) / "events"
    hours = sorted((folder / f"queue={encode_prefix(prefix)}").glob("date=*/hour=*"))
    for hour_dir in reversed(hours):
        files = list(hour_dir.glob("*.parquet"))
        if not files:
            continue
        column = ds.dataset(files, format="parquet").to_table(columns=["received_at"]).column(0)
        if len(column):
            return pd.Timestamp(pc.max(column).as_py()).tz_convert("UTC")
    return None


def read_table(path: str | Path, table: str, prefix: str, start: TimeLike = None, end: TimeLike = None,
               columns: list[str] | None = None) -> pa.Table:
    """Rows of one table for ``prefix`` with time in [start, end), as Arrow, in file order.

    Only the partitions (queue, date, hour) of the range are opened; ``columns``
    (default: the table's own) limits what is read. For callers that aggregate
    in Arrow and need neither pandas nor the sort ``load_history`` does.
    """
    data = open_dataset(path, table)
    names = columns if columns is not None else list(TABLES[table][0].names)
    return data.to_table(columns=names, filter=_filter(table, prefix, _utc(start, "start"), _utc(end, "end")))
