"""MonitorService: record queues' events for as long as it runs and keep them on disk.

One ``EventRecorder`` per queue (the lossless recorder) and one flush thread
that, every ``flush_s`` seconds, drains each recorder, turns the messages into
Arrow tables, appends them to the history folder (``DatasetWriter``), the
closed gaps and the finished minutes' rollups too, and records until when the
queue is on disk. A maintenance thread compacts closed partitions and applies
retention. ``stop()`` flushes everything (open gaps and the minute in progress
included) before it returns.

Plugging in (the Prometheus metrics use this): ``observers`` is a list of
callables, each called after every drain as ``observer(prefix, events)``,
``events`` a pandas frame of the drained events with the ``EVENTS_SCHEMA``
columns (received_at, timestamp, event, job_id, status, priority, data as
JSON text), possibly empty. An observer runs on the flush thread: it must be
quick, and an exception in it is logged, never fatal. ``queue_health(prefix)``
returns one queue's counters (what ``/metrics`` shows with that queue's
label), ``health()`` their totals over every queue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import redis

from botrix_toolkit.core.errors import InvalidInputError
from botrix_toolkit.core.keys import QueueKeys
from botrix_toolkit.frames.dataset_layout import GAPS_SCHEMA
from botrix_toolkit.frames.events import DrainedMessages, EventRecorder
from botrix_toolkit.frames.history_dataset import last_received_at
from botrix_toolkit.frames.rollups import RollupBuilder
from botrix_toolkit.monitor.dataset_writer import DatasetWriter
from botrix_toolkit.monitor.event_tables import ParsingInPieces
from botrix_toolkit.monitor.flush_helpers import flush_helpers
from botrix_toolkit.monitor.maintenance import apply_retention, compact

logger = logging.getLogger(__name__)

# A partition is compacted this long after it ends: writes for it may still be on their way.
COMPACT_AFTER = timedelta(minutes=2)

Observer = Callable[[str, pd.DataFrame], None]

_US_PER_MINUTE = 60_000_000
DOWNTIME_REASON = "monitor not running"
_BEHIND_LOG_EVERY_S = 60.0  # at most one "falling behind" line a minute


@dataclass
class _Queue:
    prefix: str
    recorder: EventRecorder
    rollups: RollupBuilder = field(default_factory=RollupBuilder)
    gaps_written: int = 0  # recorder gaps already on disk
    unwritten: DrainedMessages | None = None  # drained, but the write failed: retried first
    events: int = 0
    malformed: int = 0
    downtime_gaps: int = 0  # times the monitor was down, found on start
    dropped: int = 0
    # Every message received before this (ns) is on disk: the last successful flush's drain time.
    on_disk_until_ns: int = field(default_factory=time.time_ns)
    last_received_ns: int | None = None  # the newest message drained


class MonitorService:
    """Records every event of ``prefixes`` on the server at ``url`` into the folder ``history``."""

    def __init__(
        self,
        url: str,
        prefixes: Iterable[str],
        history: str | Path,
        *,
        flush_s: float = 1.0,
        retain: timedelta | None = None,
        maintenance_s: float = 60.0,
        compact_after: timedelta = COMPACT_AFTER,
        recorder_maxlen: int = 20_000_000,
        observers: Iterable[Observer] = (),
    ) -> None:
        self.prefixes = list(dict.fromkeys(prefixes))
        if not self.prefixes or not all(isinstance(p, str) and p for p in self.prefixes):
            raise InvalidInputError(f"prefixes must be non-empty strings, got {self.prefixes!r}")
        if not flush_s > 0:
            raise InvalidInputError(f"flush_s must be positive, got {flush_s!r}")
        if retain is not None and retain <= timedelta(0):
            raise InvalidInputError(f"retain must be positive, got {retain!r}")
        self.url = url
        self.history = Path(history)
        self.flush_s = float(flush_s)
        self.retain = retain
        self.maintenance_s = maintenance_s
        self.compact_after = max(compact_after, timedelta(seconds=5 * flush_s))
        self.observers: list[Observer] = list(observers)
        self.writer = DatasetWriter(self.history)
        self._client = redis.Redis.from_url(url)
        self._queues = [
            _Queue(p, EventRecorder(self._client, channel=QueueKeys(p).updates, maxlen=recorder_maxlen))
            for p in self.prefixes
        ]
        self._lock = threading.Lock()  # the writer's: compaction and retention swap under it
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._last_flush = time.time()
        self._behind_logged_at = -float("inf")
        self._started = False

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> MonitorService:
        """Subscribe to every queue, record the time the monitor was down, start flushing."""
        for queue in self._queues:
            covered_until = self._covered_until(queue.prefix)
            queue.recorder.start()
            if covered_until is not None:
                now = time.time_ns()
                self._write_gaps(queue, [[covered_until, now, DOWNTIME_REASON]])
                queue.downtime_gaps += 1
            queue.on_disk_until_ns = time.time_ns()
        self._last_flush = time.time()
        self._write_states(time.time_ns())
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._flush_loop, name="botrix-monitor-flush", daemon=True),
            threading.Thread(target=self._maintenance_loop, name="botrix-monitor-maintenance", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        self._started = True
        return self

    def stop(self) -> None:
        """Stop the threads, write everything received (open gaps end now), unsubscribe."""
        if not self._started:
            return
        self._stop.set()
        for thread in self._threads:
            thread.join()
        for queue in self._queues:
            queue.recorder.stop()
        self.flush(final=True)
        self._client.close()
        self._started = False

    def __enter__(self) -> MonitorService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- flushing ----------------------------------------------------------------

    def _flush_loop(self) -> None:
        while not self._stop.wait(max(0.0, self._last_flush + self.flush_s - time.time())):
            try:
                self.flush()
            except Exception:
                logger.exception("monitor flush failed; retrying in %.1f s", self.flush_s)
                self._last_flush = time.time()

    def flush(self, final: bool = False) -> None:
        """Drain every recorder and append what it had. ``final``: also the open gaps and minute.

        A queue whose write fails keeps its messages for the next flush and
        does not hold up the others (its ``flush_lag_s`` grows, theirs does
        not); the first such error is raised once every queue was tried.
        """
        failed: Exception | None = None
        flush_began, written_before = time.monotonic(), sum(q.events for q in self._queues)
        for queue in self._queues:
            try:
                self._flush_queue(queue, final)
            except Exception as exc:
                if failed is not None:  # the first is raised (the flush loop logs it), the others logged here
                    logger.exception("monitor flush of %r failed", queue.prefix)
                failed = failed or exc
        self._last_flush = time.time()
        took = time.monotonic() - flush_began
        if took > self.flush_s and time.monotonic() - self._behind_logged_at > _BEHIND_LOG_EVERY_S:
            # Nothing is dropped: the recorders' buffers grow until the writing catches up.
            self._behind_logged_at = time.monotonic()
            logger.warning("monitor falling behind: a flush of %d events took %.1f s (flush every %g s); "
                           "the recorders buffer the rest", sum(q.events for q in self._queues) - written_before,
                           took, self.flush_s)
        if failed is not None:
            raise failed

    def _flush_queue(self, queue: _Queue, final: bool) -> None:
        began = time.perf_counter()
        # Each piece is parsed on the helper threads as soon as the drain has cut it out of the socket chunks.
        parsing = ParsingInPieces()
        if queue.unwritten is not None:  # a failed write's messages go first, never lost
            parsing.add(queue.unwritten.received_ns, queue.unwritten.payloads)
        drained = queue.recorder.drain(on_split=lambda piece: parsing.add(piece.received_ns, piece.payloads))
        if queue.unwritten is not None:
            drained = queue.unwritten.then(drained)
        queue.unwritten = drained
        if len(drained):
            queue.last_received_ns = int(drained.received_ns[-1])
        drain_s = time.perf_counter() - began
        events, malformed = parsing.tables()
        parse_s = time.perf_counter() - began - drain_s  # what was left of it once the drain was done
        # The batch's rollups are worked out on a helper thread while its files are written;
        # they are taken in only once the write succeeded, so a failed write leaves them as they were.
        rollups = flush_helpers().submit(queue.rollups.prepare, events)
        with self._lock:
            self.writer.append("events", queue.prefix, events)
            self.writer.append("malformed", queue.prefix, malformed)
        queue.unwritten = None
        queue.events += events.num_rows
        queue.malformed += malformed.num_rows
        if drained.dropped:
            queue.dropped += drained.dropped
            logger.error("monitor fell behind on %r: %d events dropped", queue.prefix, drained.dropped)
        self._write_new_gaps(queue, drained, final)
        queue.rollups.commit(rollups.result())
        cutoff = None if final else drained.drained_at_ns // 1000 // _US_PER_MINUTE * _US_PER_MINUTE
        counts, latency = queue.rollups.close(cutoff)
        with self._lock:
            self.writer.append("rollup_counts", queue.prefix, counts)
            self.writer.append("rollup_latency", queue.prefix, latency)
        self._write_state(queue, _covered_until(drained, final))
        queue.on_disk_until_ns = drained.drained_at_ns
        self._notify(queue.prefix, events)
        logger.debug("flushed %d events of %r: drain %.3f s, parse %.3f s, total %.3f s", events.num_rows,
                     queue.prefix, drain_s, parse_s, time.perf_counter() - began)

    def _write_new_gaps(self, queue: _Queue, drained: DrainedMessages, final: bool) -> None:
        closed = []
        for start, end, reason in drained.gaps[queue.gaps_written:]:
            if end is None:
                if not final:
                    break  # written once it closes (or when the monitor stops)
                end, reason = drained.drained_at_ns, f"{reason} (still disconnected when the monitor stopped)"
            closed.append([start, end, reason])
        self._write_gaps(queue, closed)
        queue.gaps_written += len(closed)

    def _write_gaps(self, queue: _Queue, gaps: list[list[Any]]) -> None:
        if not gaps:
            return
        for start, end, reason in gaps:
            logger.warning("gap in queue %r: %s to %s (%.1f s): %s", queue.prefix, _iso(start), _iso(end),
                           (end - start) / 1e9, reason)
        table = pa.table({
            "start": pa.array([g[0] // 1000 for g in gaps], type=pa.int64()).cast(GAPS_SCHEMA.field("start").type),
            "end": pa.array([g[1] // 1000 for g in gaps], type=pa.int64()).cast(GAPS_SCHEMA.field("end").type),
            "duration_s": pa.array([(g[1] - g[0]) / 1e9 for g in gaps], type=pa.float64()),
            "reason": pa.array([str(g[2]) for g in gaps], type=pa.string()),
        }, schema=GAPS_SCHEMA)
        with self._lock:
            self.writer.append("gaps", queue.prefix, table)

    def _write_state(self, queue: _Queue, covered_until_ns: int) -> None:
        self.writer.write_state(queue.prefix, {"covered_until_ns": covered_until_ns,
                                               "covered_until": _iso(covered_until_ns)})

    def _write_states(self, now_ns: int) -> None:
        for queue in self._queues:
            self._write_state(queue, now_ns)

    def _covered_until(self, prefix: str) -> int | None:
        """Until when the queue's events were on disk: the state file, else the last row written."""
        state = self.writer.read_state(prefix)
        covered = state.get("covered_until_ns") if state else None
        if isinstance(covered, int):
            return covered
        last = last_received_at(self.history, prefix)
        return None if last is None else int(last.value)

    def _notify(self, prefix: str, events: pa.Table) -> None:
        if not self.observers:
            return
        frame = events.to_pandas()
        for observer in self.observers:
            try:
                observer(prefix, frame)
            except Exception:
                logger.exception("monitor observer %r failed", observer)

    # -- maintenance -------------------------------------------------------------

    def _maintenance_loop(self) -> None:
        while not self._stop.wait(self.maintenance_s):
            try:
                self.maintain()
            except Exception:
                logger.exception("monitor maintenance failed; retrying in %.0f s", self.maintenance_s)

    def maintain(self, now: datetime | None = None) -> None:
        """Compact closed partitions, then delete those older than ``retain``."""
        now = now or datetime.now(UTC)
        for path, files, rows in compact(self.history, now, self.compact_after, self._lock):
            logger.info("compacted %s: %d files into one, %d rows", path.relative_to(self.history), files, rows)
        if self.retain is not None:
            for path in apply_retention(self.history, now, self.retain, self._lock):
                logger.info("retention deleted %s", path.relative_to(self.history))

    # -- health ------------------------------------------------------------------

    def queue_health(self, prefix: str) -> dict[str, Any]:
        """One queue's recorder health (what ``/metrics`` shows with its ``queue`` label).

        ``events_received``: messages its recorder got (counted as they
        arrive); ``events_written``, ``malformed``: rows written to disk;
        ``gaps``: periods without its events, the open one included (a lost
        subscription, or the monitor down before it started); ``dropped``:
        messages lost because the recorder's buffer was full; ``flush_lag_s``:
        seconds since every message it had received was last on disk (about
        ``flush_s`` while writes succeed, growing while they fail);
        ``last_event_age_s``: seconds since the newest message drained was
        received (None before the first); ``open_jobs``: jobs followed for
        its rollups. Counters only grow. Safe to call from any thread.
        """
        queue = self._queue(prefix)
        now_ns = time.time_ns()
        last = queue.last_received_ns
        return {
            "events_received": queue.recorder.received,
            "events_written": queue.events,
            # The recorder's own list only grows and holds the open gap too, so the sum
            # never goes back, whatever the flush thread is doing.
            "gaps": queue.downtime_gaps + len(queue.recorder.gaps()),
            "malformed": queue.malformed,
            "dropped": queue.dropped,
            "flush_lag_s": max(0.0, (now_ns - queue.on_disk_until_ns) / 1e9),
            "last_event_age_s": None if last is None else max(0.0, (now_ns - last) / 1e9),
            "open_jobs": queue.rollups.open_jobs,
        }

    def health(self) -> dict[str, Any]:
        """Every queue's ``queue_health`` summed (``flush_lag_s``: the largest; ``last_event_age_s``: the
        newest event's), and ``queues``, the prefixes."""
        per_queue = [self.queue_health(prefix) for prefix in self.prefixes]
        total: dict[str, Any] = {key: sum(h[key] for h in per_queue)
                                 for key in ("events_received", "events_written", "gaps", "malformed",
                                             "dropped", "open_jobs")}
        total["flush_lag_s"] = max(h["flush_lag_s"] for h in per_queue)
        ages = [h["last_event_age_s"] for h in per_queue if h["last_event_age_s"] is not None]
        total["last_event_age_s"] = min(ages) if ages else None
        total["queues"] = list(self.prefixes)
        return total

    def _queue(self, prefix: str) -> _Queue:
        for queue in self._queues:
            if queue.prefix == prefix:
                return queue
        raise InvalidInputError(f"the monitor records no queue {prefix!r}; it records {self.prefixes}")

def _covered_until(drained: DrainedMessages, final: bool) -> int:
    """Every event before this time is on disk (or in a gap that is, or will be, recorded)."""
    open_gaps = [g for g in drained.gaps if g[1] is None]
    if open_gaps and not final:
        return int(open_gaps[0][0])
    return drained.drained_at_ns


def _iso(ns: int) -> str:
    return pd.Timestamp(ns, unit="ns", tz="UTC").isoformat()
