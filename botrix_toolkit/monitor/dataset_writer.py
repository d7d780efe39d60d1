"""Append tables to the history folder: one file per partition per flush, each appearing atomically.

A file is written under ``DIR/_staging``, flushed to the disk (fsync), then
renamed into its partition: a reader listing a partition sees whole files
only, never a half-written one. The per-queue state file (until when the
queue's events are on disk) is replaced the same way.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from botrix_toolkit.core.errors import InvalidInputError
from botrix_toolkit.frames.dataset_layout import (
    STAGING,
    STATE,
    TABLES,
    part_name,
    partition_dir,
    state_path,
)

logger = logging.getLogger(__name__)

COMPRESSION = "zstd"
_US_PER_HOUR = 3_600_000_000
# The column whose UTC date (and hour) places a row in its partition.
PARTITION_COLUMN = {
    "events": "received_at",
    "malformed": "received_at",
    "gaps": "start",
    "rollup_counts": "minute",
    "rollup_latency": "minute",
}


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_parquet_atomically(table: pa.Table, final: Path, staging: Path) -> Path:
    """Write ``table`` to ``final`` so that ``final`` is never seen half-written. Returns ``final``."""
    staging.mkdir(parents=True, exist_ok=True)
    tmp = staging / f"{uuid.uuid4().hex}.parquet.tmp"
    try:
        pq.write_table(table, tmp, compression=COMPRESSION)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(final.parent)
    return final


class DatasetWriter:
    """Appends Arrow tables of one history folder, partitioned by queue, date and hour."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise InvalidInputError(f"history path {str(self.root)!r} exists and is not a directory")
        self.staging = self.root / STAGING
        self.staging.mkdir(parents=True, exist_ok=True)
        (self.root / STATE).mkdir(exist_ok=True)
        for leftover in self.staging.glob("*.tmp"):  # a writer killed mid-file: never renamed, never read
            leftover.unlink(missing_ok=True)

    def append(self, table_name: str, prefix: str, table: pa.Table) -> list[Path]:
        """Write ``table``'s rows as new files, one per partition they fall in. Returns the files."""
        schema, hourly = TABLES[table_name]
        if table.num_rows == 0:
            return []
        table = table.select(schema.names).cast(schema)
        micros = table.column(PARTITION_COLUMN[table_name]).cast(pa.int64()).to_numpy(zero_copy_only=False)
        unit = _US_PER_HOUR if hourly else 24 * _US_PER_HOUR
        buckets = micros // unit
        written = []
        for bucket in np.unique(buckets):
            rows = table if len(buckets) and (buckets == bucket).all() else table.filter(buckets == bucket)
            start_us = int(bucket) * unit
            day = np.datetime64(start_us, "us").astype("datetime64[D]")
            hour = int(start_us // _US_PER_HOUR % 24) if hourly else None
            first_us = int(micros[buckets == bucket].min())
            folder = partition_dir(self.root, table_name, prefix, str(day), hour)
            final = folder / part_name(first_us, uuid.uuid4().hex[:12])
            written.append(write_parquet_atomically(rows, final, self.staging))
        return written

    # -- per-queue state -------------------------------------------------------

    def write_state(self, prefix: str, state: dict[str, object]) -> None:
        """Replace the queue's state file (``covered_until_ns`` and counters) atomically."""
        final = state_path(self.root, prefix)
        tmp = self.staging / f"{uuid.uuid4().hex}.json.tmp"
        tmp.write_text(json.dumps({"prefix": prefix, **state}), encoding="utf-8")
        os.replace(tmp, final)

    def read_state(self, prefix: str) -> dict[str, object] | None:
        """The queue's last state, or None when it has none (or it cannot be read)."""
        path = state_path(self.root, prefix)
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            logger.warning("ignoring unreadable monitor state %s: %s", path, exc)
            return None
        return state if isinstance(state, dict) else None
