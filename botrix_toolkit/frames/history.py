"""A recorded event history that outlives the recorder: Parquet and CSV, no server needed.

``EventRecorder.snapshot()`` returns a ``RecordedEvents``; ``save(path)`` writes
it and ``RecordedEvents.load(path)`` (also ``EventRecorder.load``) reads it
back, so a history can be analysed offline, in a notebook, on another machine.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from botrix_toolkit.core.errors import InvalidInputError
from botrix_toolkit.frames.event_frames import (
    EVENT_COLUMNS,
    MALFORMED_COLUMNS,
    empty_frame,
    gaps_frame_from,
    malformed_frame_from,
)

_SAVE_FORMAT = "botrix-events/1"
_CSV_META_PREFIX = "# botrix-events "


def _ts(ns: int | None) -> pd.Timestamp | None:
    return None if ns is None else pd.Timestamp(ns, unit="ns", tz="UTC")


def gap_records(gaps: list[list[Any]], now_ns: int) -> list[dict[str, Any]]:
    """Gaps as plain dicts (start, end, duration_s, reason); an open gap runs to now."""
    out = []
    for start_ns, end_ns, reason in gaps:
        stop_ns = now_ns if end_ns is None else end_ns
        out.append(
            {
                "start": _ts(start_ns),
                "end": _ts(end_ns),
                "duration_s": (stop_ns - start_ns) / 1e9,
                "reason": reason,
            }
        )
    return out


@dataclass
class RecordedEvents:
    """A finished or loaded recording: works with no server.

    Returned by ``EventRecorder.snapshot()`` and ``EventRecorder.load(path)``.
    """

    events: pd.DataFrame
    gap_list: list[dict[str, Any]] = field(default_factory=list)
    malformed_events: pd.DataFrame = field(default_factory=lambda: empty_frame(MALFORMED_COLUMNS))
    counters: dict[str, Any] = field(default_factory=dict)
    channel: str | None = None

    def frame(self) -> pd.DataFrame:
        """The events frame (``frames.EVENT_COLUMNS``): one row per message, receive order.

        ``attrs["gaps"]`` lists the recording's gaps as dicts (start, end,
        duration_s, reason).
        """
        frame = self.events.copy()
        frame.attrs["gaps"] = [dict(g) for g in self.gap_list]
        return frame

    def gaps(self) -> pd.DataFrame:
        """One row per period the recorder was not subscribed (``frames.GAP_COLUMNS``)."""
        return gaps_frame_from(self.gap_list)

    def malformed(self) -> pd.DataFrame:
        """One row per message that was not an event (``frames.MALFORMED_COLUMNS``)."""
        return self.malformed_events.copy()

    def stats(self) -> dict[str, Any]:
        """Counters at the time of the snapshot: received, dropped_oldest, malformed, gaps, running."""
        return dict(self.counters)

    def save(self, path: str | Path) -> Path:
        """Write the recording to Parquet (``.parquet``/``.pq``) or CSV (``.csv``).

        ``data`` is stored as JSON text. Gaps, malformed messages and counters
        travel in the Parquet schema metadata, or in a first CSV line starting
        with ``# botrix-events``. Returns the path.
        """
        path = Path(path)
        suffix = path.suffix.lower()
        table = self.events.copy()
        # The gaps travel in the metadata below; attrs (with Timestamps) would
        # only make pandas warn that it cannot write them.
        table.attrs = {}
        table["data"] = pd.array(
            [json.dumps(d, separators=(",", ":"), ensure_ascii=False) for d in table["data"]],
            dtype="string",
        )
        meta = json.dumps(self._metadata(), separators=(",", ":"))
        if suffix in (".parquet", ".pq"):
            arrow = pa.Table.from_pandas(table, preserve_index=False)
            schema_meta = dict(arrow.schema.metadata or {})
            schema_meta[b"botrix_events"] = meta.encode()
            pq.write_table(arrow.replace_schema_metadata(schema_meta), path)
        elif suffix == ".csv":
            with path.open("w", encoding="utf-8", newline="") as fh:
                fh.write(_CSV_META_PREFIX + meta + "\n")
                table.to_csv(fh, index=False)  # default format keeps nanoseconds
        else:
            raise InvalidInputError(f"path {str(path)!r}: expected a .parquet, .pq or .csv suffix")
        return path

    def _metadata(self) -> dict[str, Any]:
        malformed = self.malformed_events
        return {
            "format": _SAVE_FORMAT,
            "channel": self.channel,
            "counters": self.counters,
            "gaps": [
                {
                    "start": g["start"].isoformat() if g["start"] is not None else None,
                    "end": g["end"].isoformat() if g["end"] is not None else None,
                    "duration_s": g["duration_s"],
                    "reason": g["reason"],
                }
                for g in self.gap_list
            ],
            "malformed": {
                "received_at_ns": [int(v) for v in malformed["received_at"].array.asi8],
                "raw": [str(v) for v in malformed["raw"]],
                "reason": [str(v) for v in malformed["reason"]],
            },
        }

    @classmethod
    def load(cls, path: str | Path, start: Any = None, end: Any = None,
             prefix: str | None = None) -> RecordedEvents:
        """Read a recording written by ``save`` (Parquet or CSV, chosen by suffix), or a history folder.

        A folder is the history ``botrix monitor`` keeps: ``start``, ``end``
        (UTC; end excluded) and ``prefix`` choose the queue and the range, and
        only the partitions of that range are read (``history_dataset.load_history``).
        """
        path = Path(path)
        if path.is_dir():
            from botrix_toolkit.frames.history_dataset import load_history

            return load_history(path, start=start, end=end, prefix=prefix)
        if (start, end, prefix) != (None, None, None):
            raise InvalidInputError(f"start, end and prefix apply to a history folder; {str(path)!r} is a file")
        suffix = path.suffix.lower()
        meta: dict[str, Any] = {}
        if suffix in (".parquet", ".pq"):
            arrow = pq.read_table(path)
            raw_meta = (arrow.schema.metadata or {}).get(b"botrix_events")
            meta = json.loads(raw_meta) if raw_meta else {}
            table = arrow.to_pandas()
        elif suffix == ".csv":
            with path.open("r", encoding="utf-8", newline="") as fh:
                first = fh.readline()
                if first.startswith(_CSV_META_PREFIX):
                    meta = json.loads(first[len(_CSV_META_PREFIX) :])
                else:
                    fh.seek(0)
                # Empty cells are <NA>; nothing else ("NA", "null", "nan") is.
                table = pd.read_csv(
                    fh, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8"
                )
        else:
            raise InvalidInputError(f"path {str(path)!r}: expected a .parquet, .pq or .csv suffix")
        return cls(
            events=_events_from_table(table, path),
            gap_list=[
                {
                    "start": pd.Timestamp(g["start"]) if g.get("start") else None,
                    "end": pd.Timestamp(g["end"]) if g.get("end") else None,
                    "duration_s": float(g["duration_s"]),
                    "reason": g["reason"],
                }
                for g in meta.get("gaps", [])
            ],
            malformed_events=_malformed_from_meta(meta.get("malformed")),
            counters=dict(meta.get("counters", {}), running=False),
            channel=meta.get("channel"),
        )

    def _repr_html_(self) -> str:
        return summary_html(self.channel, "loaded", self.counters)


def _events_from_table(table: pd.DataFrame, path: Path) -> pd.DataFrame:
    missing = [c for c in EVENT_COLUMNS if c not in table.columns]
    if missing:
        raise InvalidInputError(f"{str(path)!r} is not an events recording: no column(s) {missing}")
    if table.empty:
        return empty_frame(EVENT_COLUMNS)
    frame = pd.DataFrame(
        {
            "received_at": pd.to_datetime(table["received_at"], utc=True, format="ISO8601"),
            "timestamp": pd.to_datetime(table["timestamp"], utc=True, format="ISO8601"),
            "event": table["event"],
            "job_id": table["job_id"],
            "status": table["status"],
            "priority": pd.to_numeric(table["priority"]).astype("Int64"),
            "data": [json.loads(text) if isinstance(text, str) else {} for text in table["data"]],
        }
    )
    frame = frame.astype({k: v for k, v in EVENT_COLUMNS.items() if k != "data"})
    frame["data"] = frame["data"].astype(object)
    return frame.reset_index(drop=True)


def _malformed_from_meta(meta: dict[str, Any] | None) -> pd.DataFrame:
    if not meta:
        return empty_frame(MALFORMED_COLUMNS)
    return malformed_frame_from(meta["received_at_ns"], meta["raw"], meta["reason"])


def summary_html(channel: str | None, state: str, counters: dict[str, Any]) -> str:
    esc = html.escape
    items = "".join(
        f"<td>{esc(str(counters.get(name, 0)))}</td>"
        for name in ("received", "dropped_oldest", "malformed", "gaps")
    )
    return (
        "<div><b>EventRecorder</b> "
        f"channel <code>{esc(str(channel))}</code>, {esc(state)}"
        "<table><tr><th>received</th><th>dropped oldest</th><th>malformed</th><th>gaps</th></tr>"
        f"<tr>{items}</tr></table></div>"
    )


def open_dataset(path: str | Path, table: str = "events") -> Any:
    """The history folder's ``table`` as a ``pyarrow.dataset.Dataset`` (see ``history_dataset.open_dataset``)."""
    from botrix_toolkit.frames.history_dataset import open_dataset as open_history_table

    return open_history_table(path, table)
