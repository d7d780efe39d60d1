"""Frames of jobs: the pending queue, the jobs being processed, a stats snapshot.

Reads go through queries.py (chunked, pipelined: never one round trip per
job) and each chunk becomes a frame at once; the chunks are concatenated and
typed at once, then the typed chunks are concatenated, so a million jobs
never exist as a million sets of Python objects at the same time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pandas as pd

from botrix_toolkit.core import queries
from botrix_toolkit.core.json_depth import MAX_JSON_DEPTH, nests_too_deep
from botrix_toolkit.core.models import GO_ZERO_TIME, TIME_FIELDS
from botrix_toolkit.core.redaction import REDACTED, SECRET_FIELDS, is_secret_key, may_hold_secret, redact
from botrix_toolkit.frames.analysis import PRIORITY_LABEL_DTYPE, priority_label
from botrix_toolkit.frames.event_frames import UTC_NS, empty_frame, stats_frame_from

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
    q: QueueService, limit: int | None = None, secrets: Iterable[str] = SECRET_FIELDS
) -> pd.DataFrame:
    """The pending jobs in dequeue order, columns ``PENDING_COLUMNS`` then extra fields.

    Left out, and counted in ``df.attrs``: ``orphans`` (data expired),
    ``corrupt`` (data that is not a JSON object, or nests deeper than
    ``MAX_JSON_DEPTH``) and ``not_pending`` (status key says otherwise).
    Secret fields (``redaction.SECRET_FIELDS``, and the names in ``secrets``)
    show "***" wherever they are set, at any depth of a job.
    """
    secrets = frozenset(secrets)
    # The usual set keeps its identity: may_hold_secret has a faster check for it.
    secrets = SECRET_FIELDS if secrets <= SECRET_FIELDS else SECRET_FIELDS | secrets
    chunks: list[pd.DataFrame] = []
    counts = {"orphans": 0, "corrupt": 0, "not_pending": 0}
    with q.errors_for(q.keys.queue):
        for entries in queries.iter_queue_entries(q.redis, q.keys, limit):
            chunk = _pending_chunk(entries, counts, secrets)
            if chunk is not None:
                # Typed at once: the chunk's Python objects are freed before the
                # next is read, so a million jobs never exist as objects at once.
                chunks.append(_typed_pending(chunk, secrets))
    if chunks:
        frame = pd.concat(chunks, ignore_index=True, sort=False) if len(chunks) > 1 else chunks[0]
    else:
        frame = empty_frame(PENDING_COLUMNS)
    frame.attrs.update(counts)
    if counts["corrupt"]:
        logger.warning("%d corrupt entries left out of the pending frame of %s",
                       counts["corrupt"], q.keys.queue)
    return frame


def _pending_chunk(
    entries: queries.QueueEntries, counts: dict[str, int], secrets: frozenset[str]
) -> pd.DataFrame | None:
    documents, ranks, statuses = [], [], []
    for offset, (data, status) in enumerate(zip(entries.data, entries.status)):
        if data is None:
            counts["orphans"] += 1
            continue
        if status is not None and status != b"pending":
            counts["not_pending"] += 1
            continue
        # Counted once for both checks below (this loop runs once per job).
        containers = data.count(b"{") + data.count(b"[")
        try:
            document = None
            if containers <= MAX_JSON_DEPTH or not nests_too_deep(data):
                document = json.loads(data)
        except (ValueError, RecursionError):
            document = None
        if type(document) is not dict:
            counts["corrupt"] += 1
            continue
        if containers > 1 and may_hold_secret(data, secrets):
            # Nested objects or lists: a secret may sit below the top level.
            # Top-level secrets are hidden by column in _typed_pending.
            redact(document, secrets)
        document["id"] = entries.ids[offset]
        documents.append(document)
        ranks.append(entries.first_rank + offset)
        statuses.append("pending")
    if not documents:
        return None
    chunk = pd.DataFrame(documents)
    chunk.insert(0, "rank", ranks)
    chunk["status"] = statuses
    return chunk


def _typed_pending(frame: pd.DataFrame, secrets: frozenset[str]) -> pd.DataFrame:
    for name, dtype in PENDING_COLUMNS.items():
        if name == "priority_label":
            continue
        if name not in frame.columns:
            frame[name] = pd.Series(pd.NA if dtype != UTC_NS else pd.NaT, index=frame.index)
        frame[name] = _convert(frame[name], dtype)
    frame["priority_label"] = priority_label(frame["priority"])
    ordered = list(PENDING_COLUMNS) + [c for c in frame.columns if c not in PENDING_COLUMNS]
    frame = frame[ordered]
    for name in frame.columns:
        if isinstance(name, str) and is_secret_key(name, secrets):
            frame[name] = frame[name].where(frame[name].isna() | (frame[name] == ""), REDACTED)
    return frame


def _convert(column: pd.Series, dtype: Any) -> pd.Series:
    """A column of JSON values in the frame's dtype; values of the wrong JSON type become missing.

    Columns that pandas already inferred cleanly are cast directly; only mixed
    (object) columns pay for a per-value type check.
    """
    kind = column.dtype.kind
    if dtype == UTC_NS:
        # .map(type).eq(str): one type check per value, faster than isinstance; the
        # stubs take no type object in eq, hence the ignores here and below.
        text = column if kind != "O" else column.where(column.map(type).eq(str))  # type: ignore[arg-type]
        text = text.replace(GO_ZERO_TIME, None)
        times = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")
        return times.astype(UTC_NS)
    if dtype in ("int64", "Int64"):
        if kind in "iu":
            numbers = column
        elif kind == "f":
            numbers = column.where(column == column.round())
        else:
            numbers = pd.to_numeric(  # type: ignore[call-overload]
                column.where(column.map(type).eq(int)), errors="coerce")  # type: ignore[arg-type]
        numbers = numbers.astype("Int64")
        return numbers if dtype == "Int64" else numbers.fillna(0).astype("int64")
    if dtype == "boolean":
        return (column if kind == "b"
                else column.where(column.map(type).eq(bool))).astype("boolean")  # type: ignore[arg-type]
    if kind == "O":
        column = column.where(column.map(type).eq(str))  # type: ignore[arg-type]
    return column.astype(dtype)


def processing_frame(q: QueueService) -> pd.DataFrame:
    """The jobs being worked on, longest held first; columns ``PROCESSING_COLUMNS``.

    ``held_s`` is measured on the server's clock, so a stalled job stands out
    whatever the clock of the machine reading.
    """
    with q.errors_for(q.keys.processing, q.keys.leases):
        held = queries.held_jobs(q.redis, q.keys)
    if not held.ids:
        return empty_frame(PROCESSING_COLUMNS)
    rows = []
    for job_id, leased_ms, data, status in zip(held.ids, held.leased_at_ms, held.data, held.status):
        try:
            document = json.loads(data) if data is not None and not nests_too_deep(data) else {}
        except (ValueError, RecursionError):
            document = {}
        if type(document) is not dict:
            document = {}
        rows.append({
            "id": job_id,
            "priority": document.get("priority"),
            "status": status.decode("utf-8", "replace") if status is not None else None,
            "leased_at": leased_ms,
            "held_s": (held.server_time_ms - leased_ms) / 1000 if leased_ms is not None else None,
            "username": document.get("username"),
            "count": document.get("count"),
            "test_mode": document.get("test_mode"),
            "created_at": document.get("created_at"),
        })
    frame = pd.DataFrame(rows)
    frame["leased_at"] = pd.to_datetime(frame["leased_at"], unit="ms", utc=True).astype(UTC_NS)
    frame["held_s"] = pd.to_numeric(frame["held_s"], errors="coerce").astype("float64")
    for name in ("id", "status", "username", "count", "test_mode", "created_at", "priority"):
        frame[name] = _convert(frame[name], PROCESSING_COLUMNS[name])
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
