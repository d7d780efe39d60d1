"""Raw pub/sub payloads -> Arrow tables of events and malformed messages, vectorised.

The monitor must keep up with a flat-out publisher (the target is 400,000
messages a second), where ``json.loads`` per message in Python manages a
fraction of that. Nearly every message has the exact shape the Go service
and the toolkit's scripts publish::

    {"event":"E","job_id":"J","timestamp":T,"data":{"job_id":"J","status":"S"[,"priority":P][,"error":"M"]}}

with no escapes, so those are recognised by one anchored regular expression
(RE2, no captures: a DFA) and cut into columns between known quotes (numpy
finds every double quote once; Arrow copies the fields out), never touching
Python per message. Any other message (other keys, key order,
escapes, whitespace, bad UTF-8) goes through ``parse_event_messages``, the
toolkit's one parser, so both routes give the same rows; receive order is kept.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import Future

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from botrix_toolkit.frames.dataset_layout import EVENTS_SCHEMA, MALFORMED_SCHEMA
from botrix_toolkit.frames.event_frames import parse_event_messages
from botrix_toolkit.frames.reply_stream import spans_array
from botrix_toolkit.monitor.flush_helpers import flush_helpers

_TEXT = r'[^"\\\x00-\x1f]'  # a JSON string character that needs no escape
_INT = r"-?(?:0|[1-9][0-9]{0,17})"  # fits int64 with room to spare
_PLAIN_MESSAGE = (
    rf'^\{{"event":"{_TEXT}+","job_id":"{_TEXT}+","timestamp":-?(?:0|[1-9][0-9]{{0,9}}),'
    rf'"data":\{{"job_id":"{_TEXT}*","status":"{_TEXT}*"(?:,"priority":{_INT})?'
    rf'(?:,"error":"{_TEXT}*")?\}}\}}$'
)
_MAX_ABS_SECONDS = 9_000_000_000  # as parse_event_messages: beyond this the time is unknown
_US_PER_S = 1_000_000


def event_tables(received_ns: Sequence[int] | np.ndarray,
                 payloads: Sequence[bytes] | pa.Array | pa.ChunkedArray) -> tuple[pa.Table, pa.Table]:
    """The events table (``EVENTS_SCHEMA``) and malformed table (``MALFORMED_SCHEMA``).

    ``received_ns``: each message's receive time, int ns since the epoch;
    ``payloads``: the raw messages, same order (bytes, or a binary Arrow
    array as ``EventRecorder.drain()`` gives). Rows keep receive order. A
    chunked array is parsed chunk by chunk (a few MB each: temporaries the
    allocator reuses), the chunks side by side on the flush helper threads
    (``flush_helpers``), and the tables keep those chunks.
    """
    pieces = _pieces(received_ns, payloads)
    if len(pieces) == 1:
        return _chunk_tables(*pieces[0])
    parsing = ParsingInPieces()
    parsing.start(pieces)
    return parsing.tables()


class ParsingInPieces:
    """``event_tables`` of messages handed over a piece at a time, each parsed as soon as it comes.

    ``add`` hands a piece's chunks to the flush helpers and returns at once,
    so a drain can go on cutting the next piece while this one is parsed
    (600,000 events parsed in about half the time on two idle cores);
    ``tables`` waits for them all and joins them in the order they were added.
    """

    def __init__(self) -> None:
        self._parts: list[Future[tuple[pa.Table, pa.Table]] | tuple[np.ndarray, pa.Array]] = []

    def add(self, received_ns: Sequence[int] | np.ndarray,
            payloads: Sequence[bytes] | pa.Array | pa.ChunkedArray) -> None:
        """Starts parsing these messages. Never raises: the pieces of a drain must not be lost."""
        self.start(_pieces(received_ns, payloads))

    def start(self, pieces: list[tuple[np.ndarray, pa.Array]]) -> None:
        """Starts parsing pieces of ``(receive times in µs, payloads)``."""
        for piece in pieces:
            try:
                self._parts.append(flush_helpers().submit(_chunk_tables, *piece))
            except RuntimeError:  # the pool is shut down (the interpreter is exiting): parsed in tables()
                self._parts.append(piece)

    def tables(self) -> tuple[pa.Table, pa.Table]:
        """The events and malformed tables of every piece added, in order."""
        parts = [part.result() if isinstance(part, Future) else _chunk_tables(*part) for part in self._parts]
        if not parts:
            return EVENTS_SCHEMA.empty_table(), MALFORMED_SCHEMA.empty_table()
        return pa.concat_tables([events for events, _ in parts]), pa.concat_tables([bad for _, bad in parts])


def _pieces(received_ns: Sequence[int] | np.ndarray,
            payloads: Sequence[bytes] | pa.Array | pa.ChunkedArray) -> list[tuple[np.ndarray, pa.Array]]:
    """(receive times in µs, payloads) of each non-empty chunk of ``payloads``."""
    received_us = np.asarray(received_ns, dtype=np.int64) // 1000
    if isinstance(payloads, pa.ChunkedArray):
        chunks = list(payloads.chunks)
    elif isinstance(payloads, pa.Array):
        chunks = [payloads]
    else:
        chunks = [_binary_array(list(payloads))]
    pieces, start = [], 0
    for chunk in chunks:
        if len(chunk):
            pieces.append((received_us[start:start + len(chunk)], chunk))
        start += len(chunk)
    return pieces


def _chunk_tables(received_us: np.ndarray, raw: pa.Array) -> tuple[pa.Table, pa.Table]:
    layout: _Layout | None = None
    try:
        text = raw.cast(pa.large_string())
    except pa.ArrowInvalid:  # some payload is not UTF-8: let the Python parser sort them out
        plain = np.zeros(len(raw), dtype=bool)
    else:
        plain = pc.match_substring_regex(text, _PLAIN_MESSAGE).to_numpy(zero_copy_only=False)
        layout = _Layout(text) if plain.all() else None
    plain_rows = np.flatnonzero(plain)
    other_rows = np.flatnonzero(~plain)
    tables = []
    if len(plain_rows):
        layout = layout or _Layout(text.take(plain_rows))
        tables.append((plain_rows, _plain_events(layout, received_us[plain_rows])))
    malformed = MALFORMED_SCHEMA.empty_table()
    if len(other_rows):
        events, malformed = _parsed_tables(raw.take(other_rows).to_pylist(), received_us[other_rows])
        tables.append((other_rows[_row_positions(events)], events.drop_columns(["_row"])))
    if not tables:
        return EVENTS_SCHEMA.empty_table(), malformed
    if len(tables) == 1:
        return tables[0][1], malformed
    order = np.argsort(np.concatenate([rows for rows, _ in tables]), kind="stable")
    return pa.concat_tables([table for _, table in tables]).take(order), malformed


class _Layout:
    """A string array's bytes as numpy, with the position of every double quote in them."""

    def __init__(self, text: pa.Array) -> None:
        if text.offset or text.buffers()[1] is None:
            text = pa.concat_arrays([text])  # one contiguous copy
        self.text = text
        self.n = len(text)
        self.offsets = np.frombuffer(text.buffers()[1], dtype=np.int64)[: self.n + 1]
        buffer = text.buffers()[2]
        self.buffer = buffer if buffer is not None else pa.py_buffer(b"")
        self.values = np.frombuffer(self.buffer, dtype=np.uint8)[: self.offsets[-1]]
        self.starts, self.ends = self.offsets[:-1], self.offsets[1:]
        is_quote = self.values == ord('"')
        self.quotes = np.flatnonzero(is_quote)
        self.count = _quotes_per_message(is_quote, self.quotes, self.starts, self.ends)  # how many each message has
        self.first = np.empty(self.n, dtype=np.int64)  # and the index of its first in ``quotes``
        if self.n:
            self.first[0] = np.count_nonzero(is_quote[:self.starts[0]])
            np.cumsum(self.count[:-1], out=self.first[1:])
            self.first[1:] += self.first[0]

    def quote(self, k: int) -> np.ndarray:
        """Position of each message's k-th quote (meaningless where it has fewer: check ``count``)."""
        if not len(self.quotes):
            return np.zeros(self.n, dtype=np.int64)
        return self.quotes[np.minimum(self.first + k, len(self.quotes) - 1)]


def _quotes_per_message(is_quote: np.ndarray, quotes: np.ndarray,
                        starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """How many of ``is_quote[starts[i]:ends[i]]`` are set (``quotes``: where), for each message i.

    Summed between each start and the next in bytes, the one sum numpy runs
    at memory speed (several times faster than two binary searches per
    message in ``quotes``). A byte sum wraps past 255, so messages longer
    than that are counted by those searches instead.
    """
    count = np.zeros(len(starts), dtype=np.int64)
    nonempty = ends > starts  # reduceat would give an empty message its next byte
    if nonempty.any():
        # Each message's bytes run up to the next nonempty one's start; the last ends where the bytes do.
        count[nonempty] = np.add.reduceat(is_quote[:ends[-1]].view(np.uint8), starts[nonempty], dtype=np.uint8)
    long = np.flatnonzero(ends - starts > 255)
    if len(long):
        count[long] = np.searchsorted(quotes, ends[long]) - np.searchsorted(quotes, starts[long])
    return count


def _plain_events(layout: _Layout, received_us: np.ndarray) -> pa.Table:
    """Columns of messages that match ``_PLAIN_MESSAGE``: fields sit between known quotes.

    In such a message the n-th double quote is always the same delimiter
    (no escapes, fixed keys), so each field is cut out of the values buffer
    by the positions of its quotes.
    """
    offsets, values, quote = layout.offsets, layout.values, layout.quote
    per_message = layout.count

    def cut(starts: np.ndarray, ends: np.ndarray) -> pa.Array:
        return spans_array(layout.buffer, starts, ends, pa.large_string()).cast(pa.string())

    status = cut(quote(18) + 1, quote(19))
    seconds = pc.cast(cut(quote(9) + 2, quote(10) - 1), pa.int64())  # `"timestamp":123,"`
    seconds = pc.if_else(pc.less(pc.abs(seconds), _MAX_ABS_SECONDS), seconds, None)
    has_priority = per_message >= 22
    message_start = offsets[:-1]
    key = cut(np.where(has_priority, quote(20) + 1, message_start), np.where(has_priority, quote(21), message_start))
    has_priority &= pc.equal(key, "priority").to_numpy(zero_copy_only=False)
    # `"priority":P,` or `"priority":P}`: digits from after the colon to the next , or }
    value_start = np.where(has_priority, quote(21) + 2, message_start)
    value_end = value_start.copy()
    rows = np.flatnonzero(has_priority)
    if len(rows):  # at most 19 characters (sign and 18 digits), then `,` or `}`
        window = values[np.minimum(value_start[rows, None] + np.arange(20), len(values) - 1)]
        numeric = (window == ord("-")) | ((window >= ord("0")) & (window <= ord("9")))
        value_end[rows] = value_start[rows] + np.argmin(numeric, axis=1)
    priority = pc.cast(pc.if_else(pa.array(has_priority), cut(value_start, value_end), None), pa.int64())
    return pa.table(
        {
            "received_at": pa.array(received_us, type=pa.int64()).cast(EVENTS_SCHEMA.field("received_at").type),
            "timestamp": pc.multiply(seconds, _US_PER_S).cast(EVENTS_SCHEMA.field("timestamp").type),
            "event": cut(quote(2) + 1, quote(3)),
            "job_id": cut(quote(6) + 1, quote(7)),
            "status": pc.if_else(pc.equal(status, ""), None, status),
            "priority": priority,
            # `"data":{...}}`: from the brace after the key's closing quote to before the last brace.
            "data": cut(quote(11) + 2, offsets[1:] - 1),
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


def _binary_array(payloads: list[bytes]) -> pa.Array:
    """The payloads as one Arrow binary array, built from one join (faster than pa.array per item)."""
    lengths = np.fromiter(map(len, payloads), dtype=np.int64, count=len(payloads))
    offsets = np.zeros(len(payloads) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return pa.Array.from_buffers(pa.large_binary(), len(payloads),
                                 [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(payloads))])
