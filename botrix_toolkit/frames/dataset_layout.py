"""Where ``botrix monitor`` keeps a queue's history on disk, and each table's Arrow schema.

One folder, ``DIR``, holds a Hive-partitioned Parquet dataset per table; any
engine that reads Hive partitions (pyarrow, pandas, DuckDB, Polars, Spark)
reads it with no toolkit installed::

    DIR/events/queue=<prefix>/date=YYYY-MM-DD/hour=HH/part-<first µs>-<id>.parquet
    DIR/malformed/queue=<prefix>/date=YYYY-MM-DD/hour=HH/part-....parquet
    DIR/gaps/queue=<prefix>/date=YYYY-MM-DD/part-....parquet
    DIR/rollup_counts/queue=<prefix>/date=YYYY-MM-DD/part-....parquet
    DIR/rollup_latency/queue=<prefix>/date=YYYY-MM-DD/part-....parquet
    DIR/_staging/   files being written (never read: a leading underscore hides it)
    DIR/_state/     one JSON per queue: until when its events are on disk

``<prefix>`` is the queue's key prefix percent-encoded (every byte but
letters, digits and ``_.-~``), as Spark and pyarrow write partition values:
``botrix:jobs`` is ``queue=botrix%3Ajobs``, and readers decode it back.
Dates and hours are UTC, of ``received_at`` (of ``start`` for gaps, of
``minute`` for rollups). Times are stored to the microsecond, which Spark
reads (it refuses Parquet nanosecond timestamps).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, unquote

import pyarrow as pa

UTC_US = pa.timestamp("us", tz="UTC")

#: Raw events: one row per well-formed message, in receive order within a file.
EVENTS_SCHEMA = pa.schema([
    ("received_at", UTC_US),  # when the monitor read the message from its socket
    ("timestamp", UTC_US),  # the message's own time (whole seconds); null if absent
    ("event", pa.string()),  # job_added, status_updated, job_completed, ...
    ("job_id", pa.string()),
    ("status", pa.string()),  # data.status; null when absent
    ("priority", pa.int64()),  # data.priority (job_added, job_recovered); null when absent
    ("data", pa.string()),  # the message's data object as JSON text, passwords redacted
])

#: Messages that are not events: one row per message.
MALFORMED_SCHEMA = pa.schema([
    ("received_at", UTC_US),
    ("raw", pa.string()),  # the bytes as UTF-8 text, bad bytes replaced, passwords redacted
    ("reason", pa.string()),
])

#: Periods with no subscription (a lost connection, or the monitor not running).
GAPS_SCHEMA = pa.schema([
    ("start", UTC_US),
    ("end", UTC_US),
    ("duration_s", pa.float64()),
    ("reason", pa.string()),
])

#: Events per minute by event name and the job's priority.
ROLLUP_COUNTS_SCHEMA = pa.schema([
    ("minute", UTC_US),  # start of the minute of received_at
    ("event", pa.string()),
    ("priority", pa.int64()),  # the job's priority from its last job_added; null if unknown
    ("count", pa.int64()),
])

#: Wait and run time quantiles per minute and priority, in seconds.
ROLLUP_LATENCY_SCHEMA = pa.schema(
    [("minute", UTC_US), ("priority", pa.int64())]
    + [
        (f"{kind}_{stat}", pa.int64() if stat == "count" else pa.float64())
        for kind in ("wait", "run")
        for stat in ("count", "p50_s", "p90_s", "p99_s", "max_s")
    ]
)

#: table name -> (schema, partitioned down to the hour?)
TABLES: dict[str, tuple[pa.Schema, bool]] = {
    "events": (EVENTS_SCHEMA, True),
    "malformed": (MALFORMED_SCHEMA, True),
    "gaps": (GAPS_SCHEMA, False),
    "rollup_counts": (ROLLUP_COUNTS_SCHEMA, False),
    "rollup_latency": (ROLLUP_LATENCY_SCHEMA, False),
}

STAGING = "_staging"
STATE = "_state"
PART_SUFFIX = ".parquet"


def partitioning_schema(hourly: bool) -> pa.Schema:
    """The Hive partition fields of a table: queue and date, and hour when ``hourly``."""
    fields = [("queue", pa.string()), ("date", pa.string())]
    if hourly:
        fields.append(("hour", pa.int32()))
    return pa.schema(fields)


def encode_prefix(prefix: str) -> str:
    """A queue prefix as a partition value: percent-encoded, safe in any file system and URL."""
    return quote(prefix, safe="")


def decode_prefix(value: str) -> str:
    return unquote(value)


def queue_dir(root: Path, table: str, prefix: str) -> Path:
    return root / table / f"queue={encode_prefix(prefix)}"


def partition_dir(root: Path, table: str, prefix: str, date: str, hour: int | None) -> Path:
    """``DIR/<table>/queue=<prefix>/date=<date>[/hour=HH]``."""
    folder = queue_dir(root, table, prefix) / f"date={date}"
    return folder / f"hour={hour:02d}" if hour is not None else folder


def part_name(first_us: int, tag: str) -> str:
    """A data file's name: sorts by the time of its first row (zero-padded µs)."""
    return f"part-{max(first_us, 0):017d}-{tag}{PART_SUFFIX}"


def first_row_us(name: str) -> int | None:
    """The time of a data file's first row, as ``part_name`` wrote it; None for any other name."""
    digits = name.removeprefix("part-")[:17]
    return int(digits) if name.startswith("part-") and digits.isdigit() and len(digits) == 17 else None


def state_path(root: Path, prefix: str) -> Path:
    return root / STATE / f"{encode_prefix(prefix)}.json"
