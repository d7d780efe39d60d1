"""Split a subscriber's RESP2 reply stream into its messages, a whole batch of chunks at a time.

``EventRecorder``'s reader thread keeps raw socket chunks; turning them into
messages one ``hiredis.Reader.gets()`` at a time costs a few microseconds a
message in Python, more than a monitor writing 400,000 events a second can
spend. Nearly every reply on a subscribed connection is the same header,
``*3\\r\\n$7\\r\\nmessage\\r\\n$<n>\\r\\n<channel>\\r\\n$<len>\\r\\n``, then the payload and
CRLF, so the batch is cut by numpy: every ``*`` that starts that header is a
candidate, each candidate's length says where its reply ends, and the cut is
taken only if the replies tile the buffer exactly (each one ends where the
next begins). Anything else in the stream (another reply, a header inside a
payload, a protocol error) sends the batch through a plain RESP walker that
reads reply by reply, so both routes give the same messages.

Payloads come out as one Arrow ``large_binary`` array (copied out of the
joined chunks by Arrow, no Python object per message) and each message's
receive time is the time of the chunk in which its reply ended.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from botrix_toolkit.core.errors import BotrixError

logger = logging.getLogger(__name__)

#: How every pub/sub message reply starts (RESP2).
MESSAGE_MARKER = b"*3\r\n$7\r\nmessage\r\n"
_MAX_LENGTH_DIGITS = 10  # Redis caps a bulk string at 512 MB: 9 digits
# Bytes cut at a time. Temporaries stay a few times this size: allocations the
# C allocator reuses, where arrays of hundreds of MB are fresh pages from the
# kernel each time (page faults cost more than the work here).
RUN_BYTES = 4 << 20
_LARGE_BINARY = pa.large_binary()


class ReplyStreamError(BotrixError, ValueError):
    """The reply stream is not valid RESP2 at some position."""


@dataclass
class SplitMessages:
    """Messages cut from a batch of chunks, in stream order.

    ``received_ns``: int64 array, when the chunk holding each message's end
    was read. ``payloads``: ``large_binary`` chunked array of the payloads
    (pieces of about ``RUN_BYTES``).
    ``lost``: replies whose bytes were cut by a resynchronisation (counted as
    dropped by the recorder).
    """

    received_ns: np.ndarray
    payloads: pa.ChunkedArray
    lost: int = 0

    def __len__(self) -> int:
        return len(self.payloads)


def joined_messages(parts: list[SplitMessages], lost: int = 0) -> SplitMessages:
    """The messages of ``parts`` one after another; their losses added to ``lost``."""
    return SplitMessages(
        np.concatenate([np.zeros(0, dtype=np.int64), *(part.received_ns for part in parts)]),
        pa.chunked_array([chunk for part in parts for chunk in part.payloads.chunks], type=pa.large_binary()),
        lost + sum(part.lost for part in parts),
    )


class ReplySplitter:
    """Cuts the messages of one subscription's reply stream out of chunks, keeping the unfinished tail.

    Feed it chunks with ``split``: ``(segment, receive ns, bytes, resync)``.
    A new ``segment`` is a new connection (the unfinished reply of the old one
    is gone with it); ``resync`` marks a chunk that follows dropped bytes, so
    the stream restarts at its first message marker.
    """

    def __init__(self, channel: bytes) -> None:
        self.header = b"%s$%d\r\n%s\r\n$" % (MESSAGE_MARKER, len(channel), channel)
        self._header = np.frombuffer(self.header, dtype=np.uint8)
        self._segment: int | None = None
        self._pending = b""  # start of an unfinished reply, from earlier chunks
        self._seeking = False  # after dropped bytes: skip to the next message marker

    def split_runs(self, chunks: list[tuple[int, int, bytes, bool]]) -> Iterator[SplitMessages]:
        """The messages completed by ``chunks`` (in order), each with its chunk's receive time.

        They come a run of about ``RUN_BYTES`` at a time, each as soon as it
        is cut, so a consumer can start on one while the next is cut
        (``joined_messages`` makes one batch of them). Replies lost to a
        resynchronisation are counted in the run that follows them (or in a
        last, empty piece).
        """
        run: list[tuple[int, bytes]] = []
        run_bytes, lost = 0, 0
        for segment, now, data, resync in chunks:
            if run and (segment != self._segment or resync or run_bytes + len(data) > RUN_BYTES):
                yield self._split_run(run, lost)
                run, run_bytes, lost = [], 0, 0
            if segment != self._segment or resync:
                if resync and segment == self._segment and self._pending:
                    lost += 1  # its end was in the dropped chunk
                self._segment, self._pending = segment, b""
                self._seeking = resync
            if self._seeking:
                start = data.find(MESSAGE_MARKER)
                if start < 0:
                    continue
                data = data[start:]
                self._seeking = False
            run.append((now, data))
            run_bytes += len(data)
        if run:
            yield self._split_run(run, lost)
        elif lost:
            yield joined_messages([], lost)

    def _split_run(self, run: list[tuple[int, bytes]], lost: int) -> SplitMessages:
        """Messages of chunks that continue one another (after ``_pending``); ``lost`` carried in."""
        buf = b"".join([self._pending, *(data for _, data in run)])  # one copy, not two
        ends = np.cumsum([len(self._pending)] + [len(data) for _, data in run])  # of each piece
        times = np.asarray([0] + [now for now, _ in run], dtype=np.int64)  # no reply ends in _pending
        spans = self._tile(buf)
        if spans is None:
            starts, stops, done, walk_lost = _walk(buf)
            lost += walk_lost
        else:
            starts, stops, done = spans
        self._pending = buf[done:]
        received = times[np.searchsorted(ends, stops + 2, side="left")]  # the piece holding the CRLF
        return SplitMessages(received, pa.chunked_array([spans_array(buf, starts, stops)]), lost)

    def _tile(self, buf: bytes) -> tuple[np.ndarray, np.ndarray, int] | None:
        """(payload starts, payload ends, end of the last whole reply) if message replies
        with this channel's header tile ``buf`` from its start; None otherwise."""
        values = np.frombuffer(buf, dtype=np.uint8)
        n, width = len(values), len(self._header)
        starts = np.flatnonzero(values == self._header[0])
        starts = starts[starts + width + _MAX_LENGTH_DIGITS + 2 <= n]  # the rest is checked below
        if len(starts):
            window = width + _MAX_LENGTH_DIGITS + 2
            rows = np.lib.stride_tricks.sliding_window_view(values, window)[starts]
            # Compared as one fixed-width byte string per row: a memcmp each, not a byte array.
            headed = np.ascontiguousarray(rows[:, :width]).view(f"S{width}")[:, 0] == self.header
            starts, rows = starts[headed], rows[headed, width:]
            digits = rows - np.uint8(ord("0"))  # bytes below "0" wrap around past 9
            count = np.argmin(digits <= 9, axis=1)  # digits before the CR
            at = np.arange(len(rows))
            whole = ((count > 0) & (count <= _MAX_LENGTH_DIGITS)
                     & (rows[at, count] == ord("\r")) & (rows[at, count + 1] == ord("\n")))
            if not whole.all():
                return None
            length = np.zeros(len(rows), dtype=np.int64)
            for column in range(int(count.max(initial=0))):  # as many columns as the longest length has
                length = np.where(column < count, length * 10 + digits[:, column], length)
            payload = starts + width + count + 2
            stops = payload + length
            complete = stops + 2 <= n
            starts, payload, stops = starts[complete], payload[complete], stops[complete]
            if len(starts) and (starts[0] != 0 or (starts[1:] != stops[:-1] + 2).any()):
                return None
            if len(stops) and not ((values[stops] == ord("\r")).all() and (values[stops + 1] == ord("\n")).all()):
                return None
        else:
            payload = stops = starts
        done = int(stops[-1]) + 2 if len(stops) else 0
        rest = buf[done:]
        # What is left must be the beginning of one more message reply, nothing else.
        if not (self.header.startswith(rest) or (rest.startswith(self.header) and _unfinished(rest))):
            return None
        return payload, stops, done


def _unfinished(rest: bytes) -> bool:
    """Whether ``rest`` (a message reply's start) holds no whole reply: _walk decides if it does."""
    starts, _, done, _ = _walk(rest)
    return done == 0 and len(starts) == 0


def spans_array(values: bytes | pa.Buffer, starts: np.ndarray, stops: np.ndarray,
                arrow_type: pa.DataType = _LARGE_BINARY) -> pa.Array:
    """``values[starts[i]:stops[i]]`` for each i as one array of ``arrow_type``, copied by Arrow.

    ``arrow_type`` is ``large_binary`` or ``large_string``; the spans must be
    in order and must not overlap. The spans and the bytes between them make
    one array of monotonic offsets over ``values`` with no copy; taking its
    even elements copies the spans only.
    """
    count = len(starts)
    if count == 0:
        return pa.array([], type=arrow_type)
    offsets = np.empty(2 * count + 1, dtype=np.int64)
    offsets[0:-1:2] = starts
    offsets[1::2] = stops
    offsets[-1] = stops[-1]
    data = values if isinstance(values, pa.Buffer) else pa.py_buffer(values)
    interleaved = pa.Array.from_buffers(arrow_type, 2 * count, [None, pa.py_buffer(offsets), data])
    return interleaved.take(pa.array(np.arange(0, 2 * count, 2, dtype=np.int64)))


def _walk(buf: bytes) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Reply by reply: (payload starts, payload ends, end of the last whole reply, replies lost).

    Replies other than messages are skipped; on a protocol error the stream
    resynchronises at the next message marker and the broken reply is lost.
    """
    starts: list[int] = []
    stops: list[int] = []
    pos, done, lost = 0, 0, 0
    while pos < len(buf):
        try:
            end, span = _reply(buf, pos)
        except ReplyStreamError as exc:
            logger.warning("event recorder lost sync in the reply stream (%s); resynchronising", exc)
            lost += 1
            found = buf.find(MESSAGE_MARKER, pos + 1)
            if found < 0:  # keep the tail: a marker may begin in it
                pos = done = max(pos + 1, len(buf) - len(MESSAGE_MARKER) + 1)
                break
            pos = done = found
            continue
        if end < 0:
            break
        if span is not None:
            starts.append(span[0])
            stops.append(span[1])
        pos = done = end
    return np.asarray(starts, dtype=np.int64), np.asarray(stops, dtype=np.int64), done, lost


def _reply(buf: bytes, pos: int) -> tuple[int, tuple[int, int] | None]:
    """One RESP2 reply at ``pos``: (its end or -1 if unfinished, the payload span if it is a message)."""
    line_end = buf.find(b"\r\n", pos)
    if line_end < 0:
        return -1, None
    kind = buf[pos:pos + 1]
    if kind in (b"+", b"-", b":"):
        return line_end + 2, None
    try:
        size = int(buf[pos + 1:line_end])
    except ValueError:
        raise ReplyStreamError(f"bad length at byte {pos}") from None
    if kind == b"$":
        if size < 0:
            return line_end + 2, None
        end = line_end + 2 + size + 2
        if end > len(buf):
            return -1, None
        if buf[end - 2:end] != b"\r\n":
            raise ReplyStreamError(f"bulk string at byte {pos} does not end in CRLF")
        return end, (line_end + 2, end - 2)
    if kind != b"*":
        raise ReplyStreamError(f"unexpected reply type {kind!r} at byte {pos}")
    end, elements = line_end + 2, []
    for _ in range(max(size, 0)):
        end, span = _reply(buf, end)
        if end < 0:
            return -1, None
        elements.append(span)
    if size == 3 and elements[0] is not None and buf[elements[0][0]:elements[0][1]] == b"message":
        return end, elements[2]
    return end, None
