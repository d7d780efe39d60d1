"""A small history folder written by the monitor's own writer code, for the history view's tests.

``write_history`` runs the steps ``MonitorService.flush`` runs on each drain
(``event_tables`` -> ``DatasetWriter.append`` of the events, ``RollupBuilder``
-> the closed minutes' rollups, the state file), on messages whose receive
times it chooses, so a history can span days without waiting for them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from botrix_toolkit.frames.event_frames import parse_event_messages
from botrix_toolkit.frames.rollups import RollupBuilder
from botrix_toolkit.monitor.dataset_writer import DatasetWriter
from botrix_toolkit.monitor.event_tables import event_tables

SECRET = "hunter2-History-9c1e"
_US_PER_MINUTE = 60_000_000


def message(event: str, job_id: str, status: str, **data: object) -> bytes:
    body: dict[str, object] = {"job_id": job_id, "status": status, **data}
    return json.dumps({"event": event, "job_id": job_id, "timestamp": 1764281254, "data": body},
                      separators=(",", ":")).encode()


def job_life(job_id: str, priority: int, end: str) -> list[bytes]:
    """The messages of one job's life ending ``end`` (completed, failed or cancelled), a secret in its add."""
    return [message("status_updated", job_id, "pending"),
            message("job_added", job_id, "pending", priority=priority, password=SECRET),
            message("status_updated", job_id, "running"), message("status_updated", job_id, end),
            message(f"job_{end}", job_id, end)]


@dataclass(frozen=True)
class History:
    """What was written: the folder, the queue, every message and its receive time (ns), and the end of it."""

    folder: Path
    prefix: str
    received_ns: list[int]
    payloads: list[bytes]

    def events_frame(self) -> pd.DataFrame:
        """Every message as the dashboard's recorder would hold them (``frames.EVENT_COLUMNS``)."""
        return parse_event_messages(self.payloads, self.received_ns).frame()

    def count(self, event: str, start: pd.Timestamp, end: pd.Timestamp) -> int:
        frame = self.events_frame()
        return int(((frame["event"] == event) & (frame["received_at"] >= start)
                    & (frame["received_at"] < end)).sum())


def write_history(folder: Path, prefix: str, first: pd.Timestamp, jobs: int, every: pd.Timedelta,
                  flush_every: int = 40, covered_until: pd.Timestamp | None = None) -> History:
    """``jobs`` job lives starting ``every`` apart from ``first`` (steps 0.5 s .. 3 s apart), flushed in batches.

    Ends vary (completed, failed, cancelled) and priorities 0, 1 and 2. The
    state file says the queue is on disk until ``covered_until`` (default:
    the last message).
    """
    received, payloads = [], []
    ends = ("completed", "completed", "failed", "completed", "cancelled")
    for i in range(jobs):
        start_ns = first.value + i * every.value
        for step, payload in enumerate(job_life(f"job-{i}", i % 3, ends[i % len(ends)])):
            received.append(start_ns + step * 500_000_000 + (step // 2) * 2_000_000_000)
            payloads.append(payload)
    order = sorted(range(len(received)), key=received.__getitem__)
    received = [received[i] for i in order]
    payloads = [payloads[i] for i in order]
    writer, rollups = DatasetWriter(folder), RollupBuilder()
    for begin in range(0, len(payloads), flush_every):
        events, malformed = event_tables(received[begin:begin + flush_every], payloads[begin:begin + flush_every])
        writer.append("events", prefix, events)
        writer.append("malformed", prefix, malformed)
        rollups.add(events)
        drained_at_us = received[min(begin + flush_every, len(received)) - 1] // 1000
        counts, latency = rollups.close(drained_at_us // _US_PER_MINUTE * _US_PER_MINUTE)
        writer.append("rollup_counts", prefix, counts)
        writer.append("rollup_latency", prefix, latency)
    counts, latency = rollups.close(None)  # a monitor's stop writes the minute in progress
    writer.append("rollup_counts", prefix, counts)
    writer.append("rollup_latency", prefix, latency)
    until = covered_until.value if covered_until is not None else received[-1] + 1
    writer.write_state(prefix, {"covered_until_ns": int(until)})
    return History(folder, prefix, received, payloads)
