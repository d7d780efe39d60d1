"""EventRecorder: capture a queue's pub/sub events into a bounded in-memory buffer.

The recorder runs one daemon thread with its own connection, subscribed to the
updates channel. The thread does no parsing at all: it reads chunks of up to
1 MiB from the socket, appends ``(receive time ns, chunk)`` to a bounded deque
and counts the messages in it by their reply header. That keeps up with a
publisher pipelining flat out (about a million messages a second here), where
redis-py's ``PubSub.listen()`` falls behind and the server then drops the slow
subscriber (client-output-buffer-limit pubsub); even ``hiredis.Reader.gets()``
alone manages only about half that. Chunks are split into messages
(vectorised, ``reply_stream``) and parsed into a frame only when ``frame()`` or ``stats()`` is
asked for, each message once. A saved or loaded recording is a
``history.RecordedEvents``.

A lost connection is retried with back-off and recorded as a gap: pub/sub does
not replay what was published while nobody listened, so a gap means events may
be missing from the frame.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, fields
from itertools import islice
from pathlib import Path
from typing import Any

import hiredis
import numpy as np
import pandas as pd
import pyarrow as pa
import redis

from botrix_toolkit.core import arguments
from botrix_toolkit.core.clients import RedisClient
from botrix_toolkit.core.cluster_routing import node_client
from botrix_toolkit.core.errors import InvalidInputError, ServerConnectionError
from botrix_toolkit.core.keys import DEFAULT_PREFIX, QueueKeys
from botrix_toolkit.core.queue import QueueService
from botrix_toolkit.frames.event_frames import ParsedEvents, gaps_frame_from, parse_event_messages
from botrix_toolkit.frames.history import RecordedEvents, gap_records, summary_html
from botrix_toolkit.frames.reply_stream import MESSAGE_MARKER, ReplySplitter, SplitMessages, joined_messages

logger = logging.getLogger(__name__)

_CHUNK_BYTES = 1 << 20  # one recv() reads up to this much
_SOCKET_RCVBUF = 8 << 20  # ask the kernel for room to absorb bursts
_POLL_S = 0.25  # socket timeout: how often the thread looks at the stop flag
_STOP_DRAIN_S = 2.0  # how long a stop waits for the messages published before it
_BACKOFF_FIRST_S, _BACKOFF_MAX_S = 0.1, 2.0


def _now_ns() -> int:
    return time.time_ns()


class EventRecorder:
    """Record every message published on a queue's updates channel.

    ``q`` is a ``QueueService`` (channel defaults to ``q.keys.updates``) or a
    ``redis.Redis`` (channel defaults to the default prefix's updates channel).
    At most ``maxlen`` messages are kept; older ones are dropped and counted.

    Use as a context manager, or call ``start()`` / ``stop()``.
    """

    def __init__(
        self,
        q: QueueService | RedisClient,
        channel: str | None = None,
        maxlen: int = 1_000_000,
    ) -> None:
        # On a cluster, subscribe through one node: classic pub/sub reaches every node.
        client = node_client(q.redis if isinstance(q, QueueService) else q)
        if channel is None:
            keys = getattr(q, "keys", None)
            channel = keys.updates if isinstance(keys, QueueKeys) else QueueKeys(DEFAULT_PREFIX).updates
        if not isinstance(channel, str) or not channel:
            raise InvalidInputError(f"channel must be a non-empty string, got {channel!r}")
        arguments.whole_number("maxlen", maxlen, 1)
        pool = getattr(client, "connection_pool", None)
        if pool is None or not hasattr(pool, "connection_kwargs"):
            raise InvalidInputError(
                f"q must be a QueueService or redis.Redis with a connection pool, got {type(q).__name__}"
            )
        self.channel = channel
        self.maxlen = maxlen
        self._connection_class = pool.connection_class
        self._connection_kwargs = dict(pool.connection_kwargs)

        # Stage 1, written by the reader thread: socket chunks as received,
        # [segment, receive ns, bytes, message count, resync, straddles]
        # (straddles: its count includes a marker begun in the chunk before). A segment is one
        # connection's stream; resync marks a chunk whose start may be mid-reply
        # because the chunk before it was dropped.
        self._lock = threading.Lock()  # guards stage 1, the counters and _gaps
        self._raw: deque[list[Any]] = deque()
        self._raw_pending = 0  # messages (by marker count) in _raw
        self._raw_in_flight = 0  # messages taken from _raw, being split
        self._raw_dropped = 0  # messages in chunks dropped before they were split
        self._segment = 0
        self._split_count = 0  # messages split out of chunks so far (exact)
        self._gaps: list[list[Any]] = []  # [start_ns, end_ns | None, reason]
        self._connected = False

        # Stage 2, built on demand under _parse_lock: (receive ns, payload)
        # per message, then parsed chunks of those (each message parsed once).
        self._parse_lock = threading.Lock()
        self._buffer: deque[tuple[int, bytes]] = deque(maxlen=maxlen)
        self._splitter = ReplySplitter(channel.encode())
        self._parsed_upto = 0  # sequence number of the next message to parse
        self._chunks: deque[tuple[int, ParsedEvents]] = deque()  # (first seq, parsed)
        self._malformed_total = 0
        self._drained = 0  # messages handed over by drain(): gone from the buffer, not lost
        self._drained_dropped = 0  # dropped messages already reported by drain()

        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: redis.Connection | None = None
        name = channel.encode()
        self._unsubscribe_command = b"*2\r\n$11\r\nUNSUBSCRIBE\r\n$%d\r\n%s\r\n" % (len(name), name)
        self._unsubscribe_reply = b"*3\r\n$11\r\nunsubscribe\r\n$%d\r\n%s\r\n:0\r\n" % (len(name), name)

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> EventRecorder:
        """Subscribe, then record in a background thread. Returns self.

        Returns once the subscription is confirmed, so anything published
        afterwards is recorded. Raises ServerConnectionError if the first
        connection fails.
        """
        if self.running:
            return self
        self._stop.clear()
        try:
            conn, leftover = self._connect_and_subscribe()
        except Exception as exc:
            raise ServerConnectionError(
                f"event recorder could not subscribe to channel {self.channel!r}: {exc}"
            ) from exc
        self._thread = threading.Thread(
            target=self._run, args=(conn, leftover), name="botrix-event-recorder", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Unsubscribe and end the thread (waits up to ``timeout`` seconds).

        Every message published before the call is recorded: the server
        answers the UNSUBSCRIBE after every message it sent before it, and the
        thread reads up to that answer (for at most ``_STOP_DRAIN_S``).
        """
        self._stop.set()
        conn = self._conn
        sock = getattr(conn, "_sock", None) if conn is not None else None
        if sock is not None and not isinstance(sock, ssl.SSLSocket):
            # Sent from here, the answer wakes a blocked recv at once. A TLS socket is not
            # to be written from two threads: its reader sends it on seeing the stop flag.
            _send_quietly(sock, self._unsubscribe_command)
        if self._thread is not None:
            self._thread.join(min(timeout, _STOP_DRAIN_S + _POLL_S))
            if self._thread.is_alive() and sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # no answer in time: wake a blocked recv
                except OSError:
                    pass
                self._thread.join(max(0.0, timeout - _STOP_DRAIN_S - _POLL_S))
            if self._thread.is_alive():
                logger.warning("event recorder thread did not stop within %.1f s", timeout)
            else:
                self._thread = None

    def __enter__(self) -> EventRecorder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the recording thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    # -- the reader thread ---------------------------------------------------

    def _connect_and_subscribe(self) -> tuple[redis.Connection, bytes]:
        """Open a connection (AUTH/SELECT/TLS as the client's), SUBSCRIBE, wait for the reply.

        Returns the connection and the bytes that followed the confirmation
        (the start of the message stream), and starts a new segment.
        """
        kwargs = dict(self._connection_kwargs)
        kwargs["protocol"] = 2  # plain arrays for messages, whatever the client uses
        kwargs.setdefault("client_name", "botrix-event-recorder")
        conn = self._connection_class(**kwargs)
        conn.connect()
        self._conn = conn
        channel = self.channel.encode()
        expected = b"*3\r\n$9\r\nsubscribe\r\n$%d\r\n%s\r\n:1\r\n" % (len(channel), channel)
        try:
            sock: socket.socket = conn._sock  # redis-py has no public accessor
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _SOCKET_RCVBUF)
            except OSError:
                pass
            sock.settimeout(_POLL_S)
            conn.send_command("SUBSCRIBE", self.channel)
            deadline = time.monotonic() + max(5.0, float(kwargs.get("socket_connect_timeout") or 0))
            received = b""
            while len(received) < len(expected):
                if time.monotonic() > deadline or self._stop.is_set():
                    raise TimeoutError("no reply to SUBSCRIBE")
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    raise ConnectionError("server closed the connection")
                received += data
                if not expected.startswith(received[: len(expected)]):
                    reader = hiredis.Reader()
                    reader.feed(received)
                    reply = reader.gets()
                    detail = str(reply) if isinstance(reply, Exception) else "unexpected reply"
                    raise ConnectionError(f"SUBSCRIBE {self.channel!r} failed: {detail}")
        except BaseException:
            conn.disconnect()
            self._conn = None
            raise
        with self._lock:
            self._segment += 1
        return conn, received[len(expected) :]

    def _run(self, conn: redis.Connection | None, leftover: bytes) -> None:
        """Thread body: read until stopped; on any failure record a gap and reconnect."""
        backoff = _BACKOFF_FIRST_S
        with self._lock:
            self._connected = True
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn, leftover = self._connect_and_subscribe()
                    self._close_gap()
                    backoff = _BACKOFF_FIRST_S
                self._read_until_stopped(conn, leftover)
            except Exception as exc:
                if self._stop.is_set():
                    break
                reason = f"{type(exc).__name__}: {exc}"
                if self._open_gap(reason):
                    logger.warning("event recorder lost channel %r: %s", self.channel, reason)
                else:
                    logger.info("event recorder reconnect failed: %s; retry in %.1f s", reason, backoff)
                if conn is not None:
                    conn.disconnect()
                    conn = None
                    self._conn = None
                if self._stop.wait(backoff):
                    break
                backoff = min(backoff * 2, _BACKOFF_MAX_S)
        if conn is not None:
            try:
                conn.disconnect()
            except Exception:
                pass
        self._conn = None
        with self._lock:
            self._connected = False

    def _read_until_stopped(self, conn: redis.Connection, leftover: bytes) -> None:
        """The hot loop: copy socket chunks into stage 1 and count messages by marker.

        No reply parsing here (hiredis costs ~2 us per reply; bytes.count
        scans ~1 GB/s), so the socket is drained as fast as the server writes
        and it never drops us as a slow subscriber.
        """
        sock = conn._sock
        if sock is None:
            raise ConnectionError("connection closed")
        buf = bytearray(_CHUNK_BYTES)
        view = memoryview(buf)
        recv_into = sock.recv_into
        stop_is_set = self._stop.is_set
        lock, raw, maxlen = self._lock, self._raw, self.maxlen
        marker, tail_len = MESSAGE_MARKER, len(MESSAGE_MARKER) - 1  # counting the marker counts messages
        segment = self._segment
        tail = b""
        data = leftover
        unsubscribed = self._unsubscribe_reply
        stop_by: float | None = None  # once stopping: read on until the UNSUBSCRIBE's answer, or this time
        seen = b""  # the last bytes read, where that answer may have begun
        while True:
            if data:
                now = _now_ns()
                count = data.count(marker)
                # A marker split across two chunks is counted in the later one.
                straddles = bool(tail) and (tail + data[:tail_len]).count(marker) > 0
                count += straddles
                tail = data[-tail_len:]
                with lock:
                    raw.append([segment, now, data, count, False, straddles])
                    self._raw_pending += count
                    # Drop whole chunks only while maxlen messages remain: the
                    # exact trim to maxlen happens when chunks are split.
                    while len(raw) > 1 and self._raw_pending - raw[0][3] >= maxlen:
                        self._drop_oldest_chunk()
            if stop_is_set():
                if stop_by is None:
                    stop_by = time.monotonic() + _STOP_DRAIN_S
                    if isinstance(sock, ssl.SSLSocket):
                        _send_quietly(sock, self._unsubscribe_command)
                seen += data
                if unsubscribed in seen or time.monotonic() > stop_by:
                    return
                seen = seen[-len(unsubscribed):]
            try:
                n = recv_into(buf)
            except TimeoutError:
                data = b""
                continue
            if n == 0:
                if stop_is_set():
                    return
                raise ConnectionError("server closed the connection")
            data = bytes(view[:n])

    def _drop_oldest_chunk(self) -> None:
        # Called with _lock held: memory stays bounded even if nobody reads.
        segment, _, _, count, _, _ = self._raw.popleft()
        self._raw_pending -= count
        self._raw_dropped += count
        if self._raw and self._raw[0][0] == segment:
            following = self._raw[0]
            following[4] = True  # it may begin mid-reply: resynchronise on the next marker
            if following[5]:
                # Its first marker began in the dropped chunk: resync skips it,
                # so count that message as dropped, not as still to come.
                following[3] -= 1
                following[5] = False
                self._raw_pending -= 1
                self._raw_dropped += 1

    def _split_new(self, on_split: Callable[[SplitMessages], None] | None = None) -> SplitMessages:
        """Cut the stage-1 chunks into messages (vectorised: ``reply_stream``). Needs _parse_lock.

        ``on_split`` is handed each run as soon as it is cut (see ``drain``).
        """
        with self._lock:
            chunks = [(segment, now, data, resync) for segment, now, data, _, resync, _ in self._raw]
            self._raw.clear()
            self._raw_in_flight = self._raw_pending
            self._raw_pending = 0
        runs = []
        for run in self._splitter.split_runs(chunks):
            if on_split is not None:
                on_split(run)
            runs.append(run)
        split = joined_messages(runs)
        with self._lock:
            self._raw_dropped += split.lost
            self._split_count += len(split)
            self._raw_in_flight = 0
        return split

    def _split_raw(self) -> None:
        """Move stage-1 chunks into ``_buffer`` as (receive ns, payload). Needs _parse_lock."""
        split = self._split_new()
        self._buffer.extend(zip(split.received_ns.tolist(), split.payloads.to_pylist()))

    def _open_gap(self, reason: str) -> bool:
        """Start a gap unless one is open. Returns True if a new gap was opened."""
        with self._lock:
            self._connected = False
            if self._gaps and self._gaps[-1][1] is None:
                return False
            self._gaps.append([_now_ns(), None, reason])
            return True

    def _close_gap(self) -> None:
        now = _now_ns()
        with self._lock:
            if self._gaps and self._gaps[-1][1] is None:
                self._gaps[-1][1] = now
                start = self._gaps[-1][0]
            else:
                start = now
            self._connected = True
        logger.warning(
            "event recorder resubscribed to %r after %.2f s gap", self.channel, (now - start) / 1e9
        )

    # -- reading the recording ------------------------------------------------

    def _parse_new(self) -> tuple[list[tuple[int, ParsedEvents]], int, int, list[list[Any]], int]:
        """Parse messages received since the last call; drop parsed rows that left the buffer.

        Returns the parsed chunks, the first sequence number still buffered,
        the split count, a copy of the gaps and the messages dropped unsplit.
        """
        with self._parse_lock:
            self._split_raw()
            with self._lock:
                gaps = [list(g) for g in self._gaps]
                raw_dropped = self._raw_dropped
            # Sequence numbers count split messages; _buffer holds the last ones.
            received = self._split_count
            first_seq = received - len(self._buffer)
            new_count = received - max(self._parsed_upto, first_seq)
            # Copy only the tail not parsed yet: cheap even with a full buffer.
            new = _tail(self._buffer, new_count)
            if new:
                start_seq = received - len(new)
                parsed = parse_event_messages([p for _, p in new], [t for t, _ in new])
                self._malformed_total += len(parsed.bad_row)
                self._chunks.append((start_seq, parsed))
                self._parsed_upto = received
            while self._chunks and self._chunks[0][0] + _chunk_len(self._chunks[0][1]) <= first_seq:
                self._chunks.popleft()
            return list(self._chunks), first_seq, received, gaps, raw_dropped

    def drain(self, on_split: Callable[[SplitMessages], None] | None = None) -> DrainedMessages:
        """Hand over every message received since the last drain, unparsed, and forget them.

        For a consumer that keeps the events elsewhere (``botrix monitor``
        writes them to disk): drained messages leave the buffer, so they are
        no longer in ``frame()``, and are neither parsed here nor counted as
        dropped. The messages are cut out of the socket chunks by numpy and
        handed over as arrays, never one Python object per message. Call it
        more often than the buffer fills (``maxlen`` messages); whatever was
        dropped in between is reported in ``dropped``.

        ``on_split``, if given, is called on this thread with each piece of the
        drain (a few MB of messages, in order) as soon as it is cut, so the
        caller can start work on it while the rest is cut; the pieces together
        are exactly the messages returned. It must not raise (what it was handed
        would be lost with the drain). With it the drain is not trimmed to
        ``maxlen``, as pieces handed over cannot be taken back; what the
        recorder holds between drains is bounded all the same.
        """
        drained_at = _now_ns()
        with self._parse_lock:
            earlier = None
            if self._buffer:  # split earlier by frame() or stats(): those come first
                earlier = SplitMessages(
                    np.asarray([t for t, _ in self._buffer], dtype=np.int64),
                    pa.chunked_array([pa.array([p for _, p in self._buffer], type=pa.large_binary())]),
                )
                self._buffer.clear()
                if on_split is not None:
                    on_split(earlier)
            split = self._split_new(on_split)
            if earlier is not None:
                split = joined_messages([earlier, split])
            if on_split is None and len(split) > self.maxlen:  # as the buffer would have: the newest maxlen stay
                split = SplitMessages(split.received_ns[-self.maxlen:], split.payloads[-self.maxlen:])
            with self._lock:
                gaps = [list(g) for g in self._gaps]
                raw_dropped = self._raw_dropped
            # Everything split so far is either drained now or was dropped from the buffer.
            dropped_total = self._split_count - self._drained - len(split) + raw_dropped
            self._drained += len(split)
            self._parsed_upto = self._split_count
            self._chunks.clear()
            dropped = dropped_total - self._drained_dropped
            self._drained_dropped = dropped_total
        return DrainedMessages(
            received_ns=split.received_ns,
            payloads=split.payloads,
            dropped=dropped,
            gaps=gaps,
            drained_at_ns=drained_at,
        )

    def snapshot(self) -> RecordedEvents:
        """A consistent copy of everything recorded so far, usable with no server."""
        chunks, first_seq, received, gaps, raw_dropped = self._parse_new()
        merged = _merge([_trim(parsed, start, first_seq) for start, parsed in chunks])
        return RecordedEvents(
            events=merged.frame(),
            gap_list=gap_records(gaps, _now_ns()),
            malformed_events=merged.malformed_frame(),
            counters=self._counters(received, first_seq, len(gaps), raw_dropped),
            channel=self.channel,
        )

    def frame(self) -> pd.DataFrame:
        """The events frame (``frames.EVENT_COLUMNS``) of the buffered messages.

        One row per well-formed message in receive order, RangeIndex; columns
        received_at, timestamp (UTC), event, job_id, status, priority, data.
        ``attrs["gaps"]`` lists gaps as dicts (start, end, duration_s, reason).
        Safe to call from another thread while recording.
        """
        return self.snapshot().frame()

    def gaps(self) -> pd.DataFrame:
        """One row per period without a subscription (``frames.GAP_COLUMNS``), oldest first."""
        with self._lock:
            gaps = [list(g) for g in self._gaps]
        return gaps_frame_from(gap_records(gaps, _now_ns()))

    def malformed(self) -> pd.DataFrame:
        """Buffered messages that are not events (``frames.MALFORMED_COLUMNS``): received_at,
        raw (text, bad bytes replaced, passwords redacted), reason."""
        return self.snapshot().malformed()

    def stats(self) -> dict[str, Any]:
        """Counters: received, dropped_oldest, malformed (found so far), gaps, running, connected."""
        _, first_seq, received, gaps, raw_dropped = self._parse_new()
        return self._counters(received, first_seq, len(gaps), raw_dropped)

    @property
    def received(self) -> int:
        """Messages received so far, cheaply (no parsing).

        Messages not split yet are counted by their RESP header, which a
        payload containing a raw CRLF could fake; ``stats()`` is exact.
        """
        with self._lock:
            return self._split_count + self._raw_dropped + self._raw_pending + self._raw_in_flight

    @property
    def counters(self) -> dict[str, Any]:
        """Same as ``stats()``."""
        return self.stats()

    def _counters(
        self, split: int, first_seq: int, gap_count: int, raw_dropped: int
    ) -> dict[str, Any]:
        with self._lock:
            connected = self._connected
        return {
            "received": split + raw_dropped,
            "dropped_oldest": first_seq - self._drained + raw_dropped,
            "malformed": self._malformed_total,
            "gaps": gap_count,
            "running": self.running,
            "connected": connected and self.running,
        }

    def save(self, path: str | Path) -> Path:
        """Write the recording so far to Parquet or CSV (by suffix); see ``RecordedEvents.save``."""
        return self.snapshot().save(path)

    @staticmethod
    def load(path: str | Path, start: Any = None, end: Any = None, prefix: str | None = None) -> RecordedEvents:
        """Read a saved recording, or a range of a ``botrix monitor`` history folder (``RecordedEvents.load``);
        its frame()/gaps()/malformed() need no server."""
        return RecordedEvents.load(path, start=start, end=end, prefix=prefix)

    def _repr_html_(self) -> str:
        counters = self.stats()
        state = "recording" if counters["connected"] else ("reconnecting" if self.running else "stopped")
        return summary_html(self.channel, state, counters)

    def __repr__(self) -> str:
        return f"EventRecorder(channel={self.channel!r}, maxlen={self.maxlen}, running={self.running})"


@dataclass
class DrainedMessages:
    """What ``EventRecorder.drain()`` hands over: the messages since the last drain.

    ``received_ns`` (int64 array) and ``payloads`` (``large_binary`` chunked
    array): each message's receive time (ns since the epoch, UTC) and its raw
    payload, in receive order. ``dropped``: messages lost since the last
    drain because the buffer was full. ``gaps``: every gap so far as
    ``[start_ns, end_ns or None, reason]``. ``drained_at_ns``: when the drain
    began; every message received before it is in this drain or an earlier one.
    """

    received_ns: np.ndarray
    payloads: pa.ChunkedArray
    dropped: int
    gaps: list[list[Any]]
    drained_at_ns: int

    def __len__(self) -> int:
        return len(self.payloads)

    def then(self, later: DrainedMessages) -> DrainedMessages:
        """These messages followed by ``later``'s (drops added up; its gaps and drain time)."""
        return DrainedMessages(
            received_ns=np.concatenate([self.received_ns, later.received_ns]),
            payloads=pa.chunked_array([*self.payloads.chunks, *later.payloads.chunks], type=pa.large_binary()),
            dropped=self.dropped + later.dropped,
            gaps=later.gaps,
            drained_at_ns=later.drained_at_ns,
        )


def _send_quietly(sock: socket.socket, command: bytes) -> None:
    """Send on a socket that may be closing; the caller has a deadline for the answer."""
    try:
        sock.sendall(command)
    except OSError:
        pass


def _chunk_len(parsed: ParsedEvents) -> int:
    last = max(parsed.row[-1] if parsed.row else -1, parsed.bad_row[-1] if parsed.bad_row else -1)
    return last + 1


def _trim(parsed: ParsedEvents, start_seq: int, first_seq: int) -> ParsedEvents:
    """The part of a parsed chunk whose messages are still in the buffer."""
    cut = first_seq - start_seq  # rows below this index were dropped
    if cut <= 0:
        return parsed
    keep = next((k for k, r in enumerate(parsed.row) if r >= cut), len(parsed.row))
    bad_keep = next((k for k, r in enumerate(parsed.bad_row) if r >= cut), len(parsed.bad_row))
    return ParsedEvents(**{
        name: getattr(parsed, name)[bad_keep if name.startswith("bad_") else keep:]
        for name in _ALL_PARSED_FIELDS
    })


def _merge(chunks: list[ParsedEvents]) -> ParsedEvents:
    """One ParsedEvents holding the chunks' rows in order (row numbers are not kept)."""
    if len(chunks) == 1:
        return chunks[0]
    merged = ParsedEvents()
    for parsed in chunks:
        for name in _PARSED_FIELDS:
            getattr(merged, name).extend(getattr(parsed, name))
    return merged


_ALL_PARSED_FIELDS = [f.name for f in fields(ParsedEvents)]
# Row numbers are positions within one chunk: a merge does not keep them.
_PARSED_FIELDS = [name for name in _ALL_PARSED_FIELDS if name not in ("row", "bad_row")]


def _tail(buffer: deque[tuple[int, bytes]], count: int) -> list[tuple[int, bytes]]:
    """The last ``count`` items of a deque in order, in O(count) (deque indexing is not O(1))."""
    if count <= 0:
        return []
    if count * 2 >= len(buffer):
        return list(buffer)[-count:]
    tail = list(islice(reversed(buffer), count))
    tail.reverse()
    return tail
