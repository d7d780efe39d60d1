"""Frames of jobs: the pending queue, the jobs being processed, a stats snapshot.

Reads go through queries.py (chunked, pipelined: never one round trip per
job). Each chunk's values are read on the C++ side (job_columns_arrow, with
job_columns as the exact path for what it cannot take) while the next chunk
is fetched; the chunks stay Arrow columns until one frame is built at the
end, so a million jobs never exist as a million sets of Python objects.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from botrix_toolkit.core import queries
from botrix_toolkit.core.models import TIME_FIELDS
from botrix_toolkit.core.redaction import SECRET_FIELDS
from botrix_toolkit.frames.analysis import PRIORITY_LABEL_DTYPE, priority_label
from botrix_toolkit.frames.event_frames import UTC_NS, empty_frame, stats_frame_from
from botrix_toolkit.frames.job_columns import (
    JobColumns,
    concat_extra,
    empty_columns,
    exact_columns,
    hide_secrets,
)
from botrix_toolkit.frames.job_columns_arrow import arrow_columns

if TYPE_CHECKING:
    from botrix_toolkit.core.queue import QueueService

logger = logging.getLogger(__name__)

#: The pending jobs frame: one row per pending job, in dequeue order (RangeIndex).
#: Every other field of the job JSON follows as a column of its own (object).
PENDING_COLUMNS: dict[str, Any] = {
    "rank": "int64",  # position in the queue, 0 = served next
    "id": "string",
    "priority": "int64",  # as stored; may lie outside 0..2 in Go-written jobs
    "priority_label": PRIORITY_LABEL_DTYPE,  # level it is served at: high > normal > low
    "status": "string",  # the authoritative status key ("pending")
    "created_at": UTC_NS,  # NaT for Go's zero time or a missing value
    "updated_at": UTC_NS,
    "started_at": UTC_NS,
    "completed_at": UTC_NS,
    "deleted_at": UTC_NS,
    "count": "Int64",  # accounts to create
    "username": "string",
    "password": "string",  # "***" where set: the real value never reaches a frame
    "progress": "Int64",
    "successful": "Int64",
    "failed": "Int64",
    "test_mode": "boolean",
    "error_msg": "string",
}

#: The processing frame: one row per job held by a worker, longest held first.
PROCESSING_COLUMNS: dict[str, Any] = {
    "id": "string",
    "priority": "Int64",  # <NA> when the job data is gone
    "priority_label": PRIORITY_LABEL_DTYPE,
    "status": "string",
    "leased_at": UTC_NS,  # lease taken or last renewed (server clock); NaT: no lease yet
    "held_s": "float64",  # seconds since leased_at; NaN without a lease
    "username": "string",
    "count": "Int64",
    "test_mode": "boolean",
    "created_at": UTC_NS,
}


def pending_jobs_frame(
    q: QueueService, limit: int | None = None, secrets: Iterable[str] = SECRET_FIELDS, *, exact: bool = False
) -> pd.DataFrame:
    """The pending jobs in dequeue order, columns ``PENDING_COLUMNS`` then extra fields.

    Left out, and counted in ``df.attrs``: ``orphans`` (data expired),
    ``corrupt`` (data that is not a JSON object, or nests too deep) and
    ``not_pending`` (status key says otherwise). Keys named by ``secrets``
    (``redaction.is_secret_key``), at any depth, show "***" where set.
    Extra fields follow in name order, as object columns holding the JSON
    values (None where a job lacks the field). Values are read on the C++
    side (``job_columns_arrow``); ``exact=True`` reads each value with
    Python's json instead (``job_columns``): the same frame, slower.
    """
    secrets = frozenset(secrets)
    # The usual secret names always count; a caller's names are added to them.
    secrets = SECRET_FIELDS if secrets <= SECRET_FIELDS else SECRET_FIELDS | secrets
    parts: list[JobColumns] = []
    counts = {"orphans": 0, "corrupt": 0, "not_pending": 0}
    # The next chunk is fetched while this one is parsed: the JSON reader
    # and the socket reads both run without the GIL.
    with q.errors_for(q.keys.queue), ThreadPoolExecutor(1, thread_name_prefix="botrix-frame") as parser:
        parsing: Future[JobColumns] | None = None
        for entries in queries.iter_queue_entries(q.redis, q.keys, limit, with_scores=False):
            chunk = parser.submit(_pending_chunk, entries, secrets, counts, exact)
            if parsing is not None:
                parts.append(parsing.result())
            parsing = chunk
        if parsing is not None:
            parts.append(parsing.result())
    frame = _pending_frame(parts, secrets)
    frame.attrs.update(counts)
    if counts["corrupt"]:
        logger.warning("%d corrupt entries left out of the pending frame of %s",
                       counts["corrupt"], q.keys.queue)
    return frame


def _pending_chunk(
    entries: queries.QueueEntries, secrets: frozenset[str], counts: dict[str, int], exact: bool
) -> JobColumns:
    data, status = entries.data, entries.status
    if None not in data and status.count(b"pending") == len(status):
        ranks = np.arange(entries.first_rank, entries.first_rank + len(data))
        raw_ids, values = entries.raw_ids, cast(list[bytes], data)  # no None: checked above
    else:
        kept = []
        for offset, (value, state) in enumerate(zip(data, status)):
            if value is None:
                counts["orphans"] += 1
            elif state is not None and state != b"pending":
                counts["not_pending"] += 1
            else:
                kept.append(offset)
        ranks = entries.first_rank + np.array(kept, dtype=np.int64)
        raw_ids, values = [entries.raw_ids[i] for i in kept], cast(list[bytes], [data[i] for i in kept])
    if not values:
        return empty_columns()
    if exact:
        ids = [raw.decode("utf-8", "replace") for raw in raw_ids]
        columns, corrupt = exact_columns(ranks.tolist(), ids, values, secrets)
    else:
        columns, corrupt = arrow_columns(ranks, raw_ids, values, secrets)
    counts["corrupt"] += corrupt
    return columns


def _pending_frame(parts: list[JobColumns], secrets: frozenset[str]) -> pd.DataFrame:
    """One frame of every chunk's columns: typed once, at the end, from Arrow."""
    parts = [part for part in parts if part.rows] or [empty_columns()]
    table = pa.concat_tables([part.table for part in parts])
    extra = concat_extra(parts)
    table = hide_secrets(table, extra, secrets)
    rows = table.num_rows
    priority = pd.Series(pc.fill_null(table.column("priority"), 0).to_numpy(), dtype="int64")
    columns: dict[str, Any] = {
        "rank": pd.Series(table.column("rank").to_numpy(), dtype="int64"),
        "id": _text(table.column("id")),
        "priority": priority,
        "priority_label": priority_label(priority),
        "status": pd.Series(pd.array(["pending"], dtype="string").repeat(rows)),
    }
    for name, dtype in PENDING_COLUMNS.items():
        if name in columns:
            continue
        column = table.column(name)
        if dtype == UTC_NS:
            columns[name] = pd.Series(column.to_pandas(), dtype=UTC_NS) if rows else pd.Series(dtype=UTC_NS)
        elif dtype == "string":
            columns[name] = _text(column)
        else:
            extension_dtype: Any = pd.api.types.pandas_dtype(dtype)  # a masked dtype: Int64, boolean...
            columns[name] = pd.Series(extension_dtype.__from_arrow__(column))
    for name in sorted(extra):
        # a field named like a column the frame adds is kept beside it
        columns[name if name not in columns else f"json.{name}"] = pd.Series(_object_array(extra[name]), dtype=object)
    return pd.DataFrame(columns, copy=False)


def _text(column: pa.ChunkedArray) -> pd.Series:
    return pd.Series(pd.arrays.ArrowStringArray(column), dtype="string")


def _object_array(values: list[Any]) -> np.ndarray:
    # filling an empty object array never broadcasts a list value into a second dimension
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def processing_frame(q: QueueService) -> pd.DataFrame:
    """The jobs being worked on, longest held first; columns ``PROCESSING_COLUMNS``.

    ``held_s`` is measured on the server's clock, so a stalled job stands out
    whatever the clock of the machine reading.
    """
    with q.errors_for(q.keys.processing, q.keys.leases):
        held = queries.held_jobs(q.redis, q.keys)
    if not held.ids:
        return empty_frame(PROCESSING_COLUMNS)
    # The job fields are read as the pending frame reads them (job_columns_arrow):
    # Go's types and times, and nothing of a corrupt or vanished job.
    present = [i for i, data in enumerate(held.data) if data is not None]
    columns, _corrupt = arrow_columns(
        np.array(present, dtype=np.int64), [held.ids[i].encode() for i in present],
        cast(list[bytes], [held.data[i] for i in present]), SECRET_FIELDS,
    )
    job = _pending_frame([columns], SECRET_FIELDS).set_index("rank").reindex(range(len(held.ids)))
    leased: Any = pd.array(held.leased_at_ms, dtype="Float64")  # a FloatingArray (the stubs say ExtensionArray)
    frame = pd.DataFrame({
        "id": pd.array(held.ids, dtype="string"),
        "priority": job["priority"].astype("Int64").where(job["id"].notna()).array,
        "status": pd.array([s.decode("utf-8", "replace") if s is not None else None for s in held.status],
                           dtype="string"),
        "leased_at": pd.to_datetime(leased.to_numpy(dtype="float64", na_value=np.nan), unit="ms", utc=True)
        .astype(UTC_NS),
        "held_s": ((held.server_time_ms - leased) / 1000).to_numpy(dtype="float64", na_value=np.nan),
        "username": job["username"].array,
        "count": job["count"].array,
        "test_mode": job["test_mode"].array,
        "created_at": job["created_at"].array,
    })
    frame["priority_label"] = priority_label(frame["priority"])
    frame = frame[list(PROCESSING_COLUMNS)]
    return frame.sort_values("held_s", ascending=False, na_position="last", ignore_index=True)


def stats_frame(q: QueueService) -> pd.DataFrame:
    """One row: ``get_queue_stats()`` and the time it was taken (``frames.STATS_COLUMNS``).

    Costs one round trip whatever the size of the queue; concatenate snapshots
    for a time series.
    """
    return stats_frame_from(q.get_queue_stats(), pd.Timestamp.now(tz="UTC"))


assert set(TIME_FIELDS) <= set(PENDING_COLUMNS), "every Go time field has a typed column"
