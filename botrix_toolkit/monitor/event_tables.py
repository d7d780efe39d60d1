"""Raw pub/sub payloads -> Arrow tables of events and malformed messages, vectorised.

The monitor must keep up with a flat-out publisher (the target is 400,000
messages a second), where ``json.loads`` per message in Python manages a
fraction of that. Nearly every message has the exact shape the Go service
and the toolkit's scripts publish::

    {"event":"E","job_id":"J","timestamp":T,"data":{"job_id":"J","status":"S"[,"priority":P][,"error":"M"]}}

with no escapes, so those are recognised by one anchored regular expression
(RE2, no captures: a DFA) and cut into columns with Arrow's string kernels,
never touching Python per message. Any other message (other keys, key order,
escapes, whitespace, bad UTF-8) goes through ``parse_event_messages``, the
toolkit's one parser, so both routes give the same rows; receive order is kept.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from botrix_toolkit.frames.dataset_layout import EVENTS_SCHEMA, MALFORMED_SCHEMA
from botrix_toolkit.frames.event_frames import parse_event_messages

_TEXT = r'[^"\\\x00-\x1f]'  # a JSON string character that needs no escape
_INT = r"-?(?:0|[1-9][0-9]{0,17})"  # fits int64 with room to spare
_PLAIN_MESSAGE = (
    rf'^\{{"event":"{_TEXT}+","job_id":"{_TEXT}+","timestamp":-?(?:0|[1-9][0-9]{{0,9}}),'
    rf'"data":\{{"job_id":"{_TEXT}*","status":"{_TEXT}*"(?:,"priority":{_INT})?'
    rf'(?:,"error":"{_TEXT}*")?\}}\}}$'
)
# Pieces of a plain message split on '"' (two padding quotes keep index 22 in range).
_EVENT, _JOB_ID, _TIMESTAMP, _STATUS, _KEY_AFTER_STATUS, _VALUE_AFTER_STATUS = 3, 7, 10, 19, 21, 22
_MAX_ABS_SECONDS = 9_000_000_000  # as parse_event_messages: beyond this the time is unknown
_US_PER_S = 1_000_000


def event_tables(received_ns: list[int], payloads: list[bytes]) -> tuple[pa.Table, pa.Table]:
    """The events table (``EVENTS_SCHEMA``) and malformed table (``MALFORMED_SCHEMA``).

    ``received_ns``: each message's receive time, int ns since the epoch;
    ``payloads``: the raw messages, same order. Rows keep receive order.
    """
    received_us = np.asarray(received_ns, dtype=np.int64) // 1000
    raw = pa.array(payloads, type=pa.binary())
    try:
        text = raw.cast(pa.string())
    except pa.ArrowInvalid:  # some payload is not UTF-8: let the Python parser sort them out
        plain = np.zeros(len(payloads), dtype=bool)
    else:
        plain = pc.match_substring_regex(text, _PLAIN_MESSAGE).to_numpy(zero_copy_only=False)
    plain_rows = np.flatnonzero(plain)
    other_rows = np.flatnonzero(~plain)
    tables = []
    if len(plain_rows):
        tables.append((plain_rows, _plain_events(text.take(plain_rows), received_us[plain_rows])))
    malformed = MALFORMED_SCHEMA.empty_table()
    if len(other_rows):
        events, malformed = _parsed_tables([payloads[i] for i in other_rows], received_us[other_rows])
        tables.append((other_rows[_row_positions(events)], events.drop_columns(["_row"])))
    if not tables:
        return EVENTS_SCHEMA.empty_table(), malformed
    if len(tables) == 1:
        return tables[0][1], malformed
    order = np.argsort(np.concatenate([rows for rows, _ in tables]), kind="stable")
    return pa.concat_tables([table for _, table in tables]).take(order), malformed


def _plain_events(text: pa.Array, received_us: np.ndarray) -> pa.Table:
    parts = pc.split_pattern(pc.binary_join_element_wise(text, '""', ""), '"')
    status = pc.list_element(parts, _STATUS)
    seconds = pc.cast(pc.utf8_trim(pc.list_element(parts, _TIMESTAMP), ":,"), pa.int64())
    seconds = pc.if_else(pc.less(pc.abs(seconds), _MAX_ABS_SECONDS), seconds, None)
    has_priority = pc.equal(pc.list_element(parts, _KEY_AFTER_STATUS), "priority")
    priority_text = pc.utf8_trim(pc.list_element(parts, _VALUE_AFTER_STATUS), ":,}")
    priority = pc.cast(pc.if_else(has_priority, priority_text, None), pa.int64())
    data = pc.list_element(pc.split_pattern(text, ',"data":', max_splits=1), 1)
    return pa.table(
        {
            "received_at": pa.array(received_us, type=pa.int64()).cast(EVENTS_SCHEMA.field("received_at").type),
            "timestamp": pc.multiply(seconds, _US_PER_S).cast(EVENTS_SCHEMA.field("timestamp").type),
            "event": pc.list_element(parts, _EVENT),
            "job_id": pc.list_element(parts, _JOB_ID),
            "status": pc.if_else(pc.equal(status, ""), None, status),
            "priority": priority,
            "data": pc.utf8_slice_codeunits(data, 0, -1),  # drop the message's closing brace
        },
        schema=EVENTS_SCHEMA,
    )


def _parsed_tables(payloads: list[bytes], received_us: np.ndarray) -> tuple[pa.Table, pa.Table]:
    """The toolkit's own parser on the messages the fast route did not take."""
    parsed = parse_event_messages(payloads, [int(t) * 1000 for t in received_us])
    rows = np.asarray(parsed.row, dtype=np.int64)
    timestamp_ns = np.asarray(parsed.timestamp_ns, dtype=np.int64)
    known = timestamp_ns != np.iinfo(np.int64).min
    events = pa.table(
        {
            "received_at": pa.array(received_us[rows], type=pa.int64()).cast(EVENTS_SCHEMA.field("received_at").type),
            "timestamp": pa.array(timestamp_ns // 1000, mask=~known).cast(EVENTS_SCHEMA.field("timestamp").type),
            "event": pa.array(parsed.event, type=pa.string()),
            "job_id": pa.array(parsed.job_id, type=pa.string()),
            "status": pa.array(parsed.status, type=pa.string()),
            "priority": pa.array(parsed.priority, type=pa.int64()),
            "data": pa.array(
                [json.dumps(d, separators=(",", ":"), ensure_ascii=False) for d in parsed.data],
                type=pa.string(),
            ),
        },
        schema=EVENTS_SCHEMA,
    ).append_column("_row", pa.array(rows, type=pa.int64()))
    bad_rows = np.asarray(parsed.bad_row, dtype=np.int64)
    malformed = pa.table(
        {
            "received_at": pa.array(received_us[bad_rows], type=pa.int64()).cast(
                MALFORMED_SCHEMA.field("received_at").type
            ),
            "raw": pa.array(parsed.bad_raw, type=pa.string()),
            "reason": pa.array(parsed.bad_reason, type=pa.string()),
        },
        schema=MALFORMED_SCHEMA,
    )
    return events, malformed


def _row_positions(events: pa.Table) -> np.ndarray:
    return events.column("_row").to_numpy()
