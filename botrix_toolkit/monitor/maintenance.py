"""Compaction and retention of the history folder, each change atomic for readers.

Compaction merges the many small files of a closed partition (an hour of
events, a day of gaps or rollups) into one, keeping every row in order; the
day still open of gaps and rollups has the files of its closed hours merged
as each hour closes, so today stays one file and the last hour's minutes,
not a file per minute since midnight. The
merged file is written in a staging folder beside a copy of the partition's
layout, and the two folders are swapped with one ``renameat2(RENAME_EXCHANGE)``
(Linux): a reader listing the partition sees either all the small files or
the one merged file, never both, never neither. Where the call is missing
(not Linux), the merged file is renamed in and the small files deleted after,
so a reader may briefly see rows twice; that is logged once.

Retention deletes partitions that ended before ``now - retain``: each is
renamed out of the dataset first (one rename: all or nothing), then removed.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from botrix_toolkit.core.errors import OperationError
from botrix_toolkit.frames.dataset_layout import PART_SUFFIX, STAGING, TABLES, first_row_us, part_name
from botrix_toolkit.monitor.dataset_writer import COMPRESSION, fsync_dir

logger = logging.getLogger(__name__)

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_ROW_GROUP_ROWS = 1 << 20
_warned_no_exchange = False


@dataclass(frozen=True)
class Partition:
    """One leaf folder of a table: its path and the UTC time range its rows belong to."""

    table: str
    path: Path
    start: datetime
    end: datetime


def partitions(root: Path, table: str) -> list[Partition]:
    """Every leaf partition of ``table`` under ``root``, oldest first within each queue."""
    _, hourly = TABLES[table]
    found = []
    for date_dir in sorted((root / table).glob("queue=*/date=*")):
        try:
            day = datetime.strptime(date_dir.name.removeprefix("date="), "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            continue  # not ours
        if not hourly:
            found.append(Partition(table, date_dir, day, day + timedelta(days=1)))
            continue
        for hour_dir in sorted(date_dir.glob("hour=*")):
            try:
                hour = int(hour_dir.name.removeprefix("hour="))
            except ValueError:
                continue
            start = day + timedelta(hours=hour)
            found.append(Partition(table, hour_dir, start, start + timedelta(hours=1)))
    return found


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically; False where the system cannot."""
    global _warned_no_exchange
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        renameat2 = None
    if renameat2 is not None:
        if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
            return True
        errno = ctypes.get_errno()
        if errno not in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: not supported here
            raise OSError(errno, os.strerror(errno), str(a))
    if not _warned_no_exchange:
        logger.warning("atomic folder exchange unavailable: compaction may show rows twice for a moment")
        _warned_no_exchange = True
    return False


def compact_partition(
    root: Path, partition: Partition, lock: threading.Lock, before: datetime | None = None
) -> tuple[int, int] | None:
    """Merge a partition's files into one. Returns (files merged, rows), or None if nothing to do.

    ``before``: merge only the files whose first row is older (by their
    names), leaving the rest as they are. ``lock`` is the writer's: held only
    for the swap, so new files that arrived meanwhile are moved into the
    merged folder, never lost.
    """
    files = sorted(partition.path.glob(f"*{PART_SUFFIX}"))
    if before is not None:
        before_us = int(before.timestamp() * 1_000_000)
        files = [f for f in files if (first := first_row_us(f.name)) is not None and first < before_us]
    if len(files) < 2:
        return None
    schema, _ = TABLES[partition.table]
    staging = root / STAGING / f"compact-{uuid.uuid4().hex}"
    staging.mkdir(parents=True)
    target = staging / f"{uuid.uuid4().hex}.parquet.tmp"
    rows = 0
    first_us: int | None = None
    pending: list[pa.Table] = []  # written a row group at a time: an hour of a busy queue never sits in memory
    try:
        with pq.ParquetWriter(target, schema, compression=COMPRESSION) as out:
            for f in files:  # names sort by first row: receive order
                table = pq.read_table(f, schema=schema)
                rows += table.num_rows
                if first_us is None and table.num_rows:
                    first_us = int(table.column(0).cast(pa.int64())[0].as_py())
                pending.append(table)
                if sum(t.num_rows for t in pending) >= _ROW_GROUP_ROWS:
                    out.write_table(pa.concat_tables(pending), row_group_size=_ROW_GROUP_ROWS)
                    pending = []
            if pending:
                out.write_table(pa.concat_tables(pending), row_group_size=_ROW_GROUP_ROWS)
        with open(target, "rb") as fh:
            os.fsync(fh.fileno())
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    final = staging / part_name(first_us or 0, "c" + uuid.uuid4().hex[:11])
    os.replace(target, final)
    target = final
    written = pq.read_metadata(target).num_rows
    if written != rows:
        shutil.rmtree(staging, ignore_errors=True)
        raise OperationError(f"compaction of {partition.path}: wrote {written} rows of {rows}")
    with lock:
        merged_names = {f.name for f in files}
        for kept in partition.path.glob(f"*{PART_SUFFIX}"):
            if kept.name not in merged_names:  # not merged, or arrived while merging: kept
                _link_or_move(kept, staging / kept.name)
        if _exchange(staging, partition.path):
            fsync_dir(partition.path.parent)
            old = staging  # now holds the small files
        else:
            for moved in staging.glob(f"*{PART_SUFFIX}"):
                os.replace(moved, partition.path / moved.name)
            for f in files:
                f.unlink(missing_ok=True)
            old = staging
    shutil.rmtree(old, ignore_errors=True)
    return len(files), rows


def _link_or_move(source: Path, target: Path) -> None:
    # A hard link leaves the file listed where it is until the folders swap: a
    # reader meanwhile still sees every row. Moved where links are refused.
    try:
        os.link(source, target)
    except OSError:
        os.replace(source, target)


def compact(root: Path, now: datetime, settle: timedelta, lock: threading.Lock) -> list[tuple[Path, int, int]]:
    """Compact every partition that ended more than ``settle`` ago, and the closed hours of open days.

    Returns (path, files, rows) per merge.
    """
    done = []
    closed_hours_end = (now - settle).replace(minute=0, second=0, microsecond=0)
    for table, (_, hourly) in TABLES.items():
        for partition in partitions(root, table):
            if partition.end + settle <= now:
                result = compact_partition(root, partition, lock)
            elif not hourly and partition.start < closed_hours_end:
                result = compact_partition(root, partition, lock, before=closed_hours_end)
            else:
                continue
            if result is not None:
                done.append((partition.path, *result))
    return done


def apply_retention(root: Path, now: datetime, retain: timedelta, lock: threading.Lock) -> list[Path]:
    """Delete every partition that ended before ``now - retain``. Returns the deleted paths."""
    deleted = []
    for table in TABLES:
        for partition in partitions(root, table):
            if partition.end > now - retain:
                continue
            trash = root / STAGING / f"expired-{uuid.uuid4().hex}"
            with lock:
                os.replace(partition.path, trash)  # out of the dataset in one step
                _remove_empty_parents(partition.path.parent, root / table)
            shutil.rmtree(trash, ignore_errors=True)
            deleted.append(partition.path)
    return deleted


def _remove_empty_parents(folder: Path, stop: Path) -> None:
    while folder != stop and folder.is_dir():
        try:
            folder.rmdir()
        except OSError:
            return  # not empty
        folder = folder.parent
