"""Column names and dtypes of every frame the toolkit returns, and records -> DataFrame.

This module spells the columns of the events, recorder and stats frames (pvlib
style: one dictionary of name -> dtype per frame); ``job_frames.py`` spells
those of the pending and processing jobs, ``analysis.py`` those of its tables. Functions here turn raw records
(message bytes, stats dicts) into frames; they never talk to Redis.

Sections: events (pub/sub messages), recorder gaps and malformed messages,
queue stats. Secrets never reach a frame: every secret key inside an
event's data (``redaction.SECRET_FIELDS``: password, token, api_key...) shows
``"***"``, at any depth; a message nested deeper than ``MAX_JSON_DEPTH`` is
malformed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import numpy as np
import pandas as pd

from botrix_toolkit.core.errors import InvalidInputError, MissingKeyError
from botrix_toolkit.core.json_depth import nests_too_deep, too_deep_message
from botrix_toolkit.core.redaction import may_hold_secret, redact, redact_text

logger = logging.getLogger(__name__)

UTC_NS: Final = "datetime64[ns, UTC]"

# numpy's NaT as an int64: the "missing" value of an int64 nanosecond column.
_NAT_NS = np.iinfo(np.int64).min
_NS_PER_S = 1_000_000_000
# Whole seconds that still fit datetime64[ns] (years 1677..2262), with margin.
_MAX_ABS_SECONDS = 9_000_000_000
_INT64_MIN, _INT64_MAX = np.iinfo(np.int64).min, np.iinfo(np.int64).max


def empty_frame(columns: Mapping[str, str]) -> pd.DataFrame:
    """A frame with no rows and exactly the given columns and dtypes."""
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in columns.items()})


def _utc_from_ns(ns: Sequence[int] | np.ndarray) -> pd.DatetimeIndex:
    """UTC timestamps from int nanoseconds since the epoch (``_NAT_NS`` -> NaT)."""
    return pd.to_datetime(np.asarray(ns, dtype=np.int64).view("M8[ns]"), utc=True)


def _object_array(values: Sequence[Any]) -> np.ndarray:
    # np.array(list_of_dicts) would be fine, but list-like items would be
    # broadcast into a 2-D array; filling an empty object array never does.
    out = np.empty(len(values), dtype=object)
    out[:] = values if isinstance(values, list) else list(values)
    return out


# ---------------------------------------------------------------------------
# Events: one row per message received on the updates channel
# ---------------------------------------------------------------------------

# The column dicts map names to pandas dtype names. Their values are typed Any:
# pandas-stubs gives each dtype name its own Literal, which a str is not.

#: The events frame: one row per received message, in receive order, RangeIndex.
EVENT_COLUMNS: dict[str, Any] = {
    "received_at": UTC_NS,  # local time the message was read from the socket
    "timestamp": UTC_NS,  # the message's own time (whole seconds); NaT if absent
    "event": "string",  # job_added, status_updated, job_completed, ...
    "job_id": "string",
    "status": "string",  # data.status; <NA> when absent
    "priority": "Int64",  # data.priority (job_added/job_recovered); <NA> when absent
    "data": "object",  # the message's data dict, passwords redacted
}

#: Messages that could not be read as an event: one row per message, receive order.
MALFORMED_COLUMNS: dict[str, Any] = {
    "received_at": UTC_NS,
    "raw": "string",  # the bytes as UTF-8 text, undecodable bytes replaced, passwords redacted
    "reason": "string",  # why it is not an event
}


_TOO_DEEP = too_deep_message("message")


@dataclass
class ParsedEvents:
    """Column lists of parsed messages; ``row`` is each message's position in the input."""

    row: list[int] = field(default_factory=list)
    received_ns: list[int] = field(default_factory=list)
    timestamp_ns: list[int] = field(default_factory=list)
    event: list[str] = field(default_factory=list)
    job_id: list[str] = field(default_factory=list)
    status: list[str | None] = field(default_factory=list)
    priority: list[int | None] = field(default_factory=list)
    data: list[dict[str, Any]] = field(default_factory=list)
    bad_row: list[int] = field(default_factory=list)
    bad_received_ns: list[int] = field(default_factory=list)
    bad_raw: list[str] = field(default_factory=list)
    bad_reason: list[str] = field(default_factory=list)

    def frame(self) -> pd.DataFrame:
        """The events frame (see ``EVENT_COLUMNS``) of the well-formed messages."""
        return _events_frame_from_columns(self)

    def malformed_frame(self) -> pd.DataFrame:
        """The malformed frame (see ``MALFORMED_COLUMNS``) of the rejected messages."""
        return malformed_frame_from(self.bad_received_ns, self.bad_raw, self.bad_reason)


def parse_event_messages(
    raw_messages: Sequence[bytes], received_at_ns: Sequence[int] | int
) -> ParsedEvents:
    """Parse raw pub/sub payloads into column lists, keeping malformed messages apart.

    A message is malformed when it is not UTF-8, not JSON, not a JSON object,
    nests deeper than ``MAX_JSON_DEPTH``, has no non-empty string ``event`` or
    ``job_id``, or has a ``data`` that is not an object. A missing or non-numeric ``timestamp`` gives NaT; a missing
    ``data`` gives ``{}``.
    """
    n = len(raw_messages)
    if isinstance(received_at_ns, int):
        received: Sequence[int] = [received_at_ns] * n
    else:
        received = received_at_ns
        if len(received) != n:
            raise InvalidInputError(
                f"received_at_ns has {len(received)} values, expected one per message ({n})"
            )
    out = ParsedEvents()
    loads = json.loads
    # Bound methods hoisted out of the loop: this runs once per message.
    add_row, add_recv, add_ts = out.row.append, out.received_ns.append, out.timestamp_ns.append
    add_event, add_job, add_status = out.event.append, out.job_id.append, out.status.append
    add_priority, add_data = out.priority.append, out.data.append

    def reject(i: int, raw: bytes | str, reason: str) -> None:
        if isinstance(raw, (bytes, bytearray, memoryview)):
            text = bytes(raw).decode("utf-8", errors="replace")
        else:
            text = str(raw)
        out.bad_row.append(i)
        out.bad_received_ns.append(received[i])
        out.bad_raw.append(redact_text(text))
        out.bad_reason.append(reason)

    for i, raw in enumerate(raw_messages):
        if (raw.__class__ is bytes or raw.__class__ is str) and nests_too_deep(raw):
            reject(i, raw, _TOO_DEEP)
            continue
        try:
            message = loads(raw.decode("utf-8") if raw.__class__ is bytes else raw)
        except UnicodeDecodeError:
            reject(i, raw, "not UTF-8")
            continue
        except (ValueError, TypeError, AttributeError, RecursionError):
            reject(i, raw, "not JSON")
            continue
        if message.__class__ is not dict:
            reject(i, raw, "not a JSON object")
            continue
        event = message.get("event")
        if event.__class__ is not str or not event:
            reject(i, raw, "missing or non-string event")
            continue
        job_id = message.get("job_id")
        if job_id.__class__ is not str or not job_id:
            reject(i, raw, "missing or non-string job_id")
            continue
        data = message.get("data")
        if data is None:
            data = {}
        elif data.__class__ is not dict:
            reject(i, raw, "data is not a JSON object")
            continue
        if may_hold_secret(raw if raw.__class__ is bytes else str(raw).encode()):
            redact(data)
        ts = message.get("timestamp")
        if ts.__class__ is int and -_MAX_ABS_SECONDS < ts < _MAX_ABS_SECONDS:
            add_ts(ts * _NS_PER_S)
        elif ts.__class__ is float and -_MAX_ABS_SECONDS < ts < _MAX_ABS_SECONDS:
            add_ts(int(ts * _NS_PER_S))
        else:
            add_ts(_NAT_NS)
        status = data.get("status")
        add_status(status if status.__class__ is str and status else None)
        priority = data.get("priority")
        add_priority(
            priority if priority.__class__ is int and _INT64_MIN < priority <= _INT64_MAX else None
        )
        add_row(i)
        add_recv(received[i])
        add_event(event)
        add_job(job_id)
        add_data(data)
    return out


def _events_frame_from_columns(parsed: ParsedEvents) -> pd.DataFrame:
    if not parsed.event:
        return empty_frame(EVENT_COLUMNS)
    priority_values = np.fromiter(
        (0 if p is None else p for p in parsed.priority), dtype=np.int64, count=len(parsed.priority)
    )
    priority_mask = np.fromiter(
        (p is None for p in parsed.priority), dtype=bool, count=len(parsed.priority)
    )
    frame = pd.DataFrame(
        {
            "received_at": _utc_from_ns(parsed.received_ns),
            "timestamp": _utc_from_ns(parsed.timestamp_ns),
            "event": pd.array(parsed.event, dtype=EVENT_COLUMNS["event"]),
            "job_id": pd.array(parsed.job_id, dtype=EVENT_COLUMNS["job_id"]),
            "status": pd.array(parsed.status, dtype=EVENT_COLUMNS["status"]),
            "priority": pd.arrays.IntegerArray(priority_values, priority_mask),
            "data": _object_array(parsed.data),
        }
    )
    return frame


def events_frame(
    raw_messages: Sequence[bytes], received_at_ns: Sequence[int] | int
) -> pd.DataFrame:
    """The events frame of raw pub/sub payloads.

    Parameters
    ----------
    raw_messages
        Message payloads as received (bytes of JSON text).
    received_at_ns
        Receive time of each message, int nanoseconds since the Unix epoch
        (UTC), or one int for all.

    Returns
    -------
    DataFrame with RangeIndex, one row per well-formed message in input order,
    columns ``EVENT_COLUMNS``: ``received_at`` (UTC), ``timestamp`` (the
    message's own, UTC, whole seconds), ``event``, ``job_id``, ``status`` and
    ``priority`` (from ``data``, <NA> when absent) and ``data`` (the dict,
    passwords replaced by ``"***"``). Malformed messages are left out; use
    ``parse_event_messages`` to get them too.
    """
    return parse_event_messages(raw_messages, received_at_ns).frame()


def malformed_frame_from(
    received_at_ns: Sequence[int], raw_text: Sequence[str], reasons: Sequence[str]
) -> pd.DataFrame:
    """The malformed-messages frame: one row per message, columns ``MALFORMED_COLUMNS``."""
    if not len(raw_text):
        return empty_frame(MALFORMED_COLUMNS)
    return pd.DataFrame(
        {
            "received_at": _utc_from_ns(received_at_ns),
            "raw": pd.array(list(raw_text), dtype=MALFORMED_COLUMNS["raw"]),
            "reason": pd.array(list(reasons), dtype=MALFORMED_COLUMNS["reason"]),
        }
    )


# ---------------------------------------------------------------------------
# Recorder gaps: periods when the event recorder was not subscribed
# ---------------------------------------------------------------------------

#: One row per gap, oldest first. ``end`` is NaT while the gap is still open.
GAP_COLUMNS: dict[str, Any] = {
    "start": UTC_NS,  # when the connection was found lost
    "end": UTC_NS,  # when the recorder was subscribed again
    "duration_s": "float64",  # end - start in seconds (up to now for an open gap)
    "reason": "string",  # exception type and message, never message contents
}


def gaps_frame_from(gaps: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The gaps frame from dicts with keys ``start``, ``end`` (datetime/Timestamp/None),
    ``duration_s`` and ``reason``: one row per gap, columns ``GAP_COLUMNS``."""
    if not gaps:
        return empty_frame(GAP_COLUMNS)
    frame = pd.DataFrame(
        {
            "start": pd.to_datetime([g["start"] for g in gaps], utc=True),
            # None (a gap still open) becomes NaT; the stubs take no None in the list
            "end": pd.to_datetime([g.get("end") for g in gaps], utc=True),  # type: ignore[arg-type]
            "duration_s": np.array([g["duration_s"] for g in gaps], dtype="float64"),
            "reason": pd.array([g["reason"] for g in gaps], dtype=GAP_COLUMNS["reason"]),
        }
    )
    return frame.astype(GAP_COLUMNS)


# ---------------------------------------------------------------------------
# Queue stats: one row per snapshot of QueueService.get_queue_stats()
# ---------------------------------------------------------------------------

#: One row per stats snapshot, oldest first.
STATS_COLUMNS: dict[str, str] = {
    "timestamp": UTC_NS,  # when the snapshot was taken
    "queue_length": "int64",  # ids in the queue sorted set
    "processing_count": "int64",  # ids taken by workers
    "high_priority": "int64",  # pending jobs by level, each counted once
    "normal_priority": "int64",
    "low_priority": "int64",
    "ttl_seconds": "int64",  # expiry given to job keys
}


def stats_frame_from(stats: Mapping[str, Any], timestamp: datetime | pd.Timestamp) -> pd.DataFrame:
    """A one-row stats frame (columns ``STATS_COLUMNS``) from a ``get_queue_stats()`` dict.

    ``timestamp`` is when the snapshot was taken; a naive time is taken as UTC.
    Raises MissingKeyError (a KeyError) naming the missing stat when ``stats`` lacks one.
    """
    row: dict[str, Any] = {"timestamp": pd.to_datetime([timestamp], utc=True)}
    for name in STATS_COLUMNS:
        if name == "timestamp":
            continue
        if name not in stats:
            raise MissingKeyError(f"stats dict has no {name!r}; expected keys {list(STATS_COLUMNS)[1:]}")
        row[name] = [int(stats[name])]
    return pd.DataFrame(row).astype(STATS_COLUMNS)
