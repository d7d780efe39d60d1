"""Put a saved recording (``EventRecorder.save``, ``botrix simulate``'s events.parquet) into a history folder.

The rows land where ``botrix monitor`` would have written them, with their
rollups and gaps, so a recording made before the monitor ran joins the same
dataset (and the notebooks have a history to read with no server).
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from botrix_toolkit.frames.dataset_layout import EVENTS_SCHEMA, GAPS_SCHEMA, MALFORMED_SCHEMA
from botrix_toolkit.frames.history import RecordedEvents
from botrix_toolkit.frames.rollups import RollupBuilder
from botrix_toolkit.monitor.dataset_writer import DatasetWriter


def _micros(values: object) -> pa.Array:
    return pa.array(values).cast(pa.timestamp("ns", tz="UTC")).cast(pa.timestamp("us", tz="UTC"), safe=False)


def write_recording(recording: RecordedEvents, history: str | Path, prefix: str) -> int:
    """Append ``recording``'s events, malformed messages and gaps to ``history`` as queue ``prefix``.

    Returns the number of events written.
    """
    writer = DatasetWriter(history)
    frame = recording.frame()
    events = pa.table({
        "received_at": _micros(frame["received_at"]),
        "timestamp": _micros(frame["timestamp"]),
        "event": pa.array(frame["event"].astype(object), type=pa.string()),
        "job_id": pa.array(frame["job_id"].astype(object), type=pa.string()),
        "status": pa.array(frame["status"].astype(object).where(frame["status"].notna(), None), type=pa.string()),
        "priority": pa.array(frame["priority"].astype("Int64"), type=pa.int64()),
        "data": pa.array([json.dumps(d, separators=(",", ":"), ensure_ascii=False) for d in frame["data"]],
                         type=pa.string()),
    }, schema=EVENTS_SCHEMA)
    writer.append("events", prefix, events)
    malformed = recording.malformed()
    writer.append("malformed", prefix, pa.table({
        "received_at": _micros(malformed["received_at"]),
        "raw": pa.array(malformed["raw"].astype(object), type=pa.string()),
        "reason": pa.array(malformed["reason"].astype(object), type=pa.string()),
    }, schema=MALFORMED_SCHEMA))
    gaps = recording.gaps().dropna(subset=["end"])
    writer.append("gaps", prefix, pa.table({
        "start": _micros(gaps["start"]), "end": _micros(gaps["end"]),
        "duration_s": pa.array(gaps["duration_s"], type=pa.float64()),
        "reason": pa.array(gaps["reason"].astype(object), type=pa.string()),
    }, schema=GAPS_SCHEMA))
    rollups = RollupBuilder()
    rollups.add(events)
    counts, latency = rollups.close(None)
    writer.append("rollup_counts", prefix, counts)
    writer.append("rollup_latency", prefix, latency)
    return events.num_rows
