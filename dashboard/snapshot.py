"""What one dashboard refresh reads and computes: plain data, no Streamlit.

Kept free of Streamlit so that ``botrix_toolkit.bench.dashboard`` can time
exactly the work a refresh does. Nothing here scans the whole queue: counts
come from ``get_queue_stats`` (server-side ZCARD/ZCOUNT), the table reads only
the first ``top_n`` jobs, and the live figures use only the last minutes of
recorded events.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
import plotly.graph_objects as go
from botrix_toolkit.dashboard import cells

from botrix_toolkit.core.json_depth import MAX_JSON_DEPTH, nests_too_deep, too_deep_message
from botrix_toolkit.core.redaction import is_secret_key
from botrix_toolkit.frames import analysis, plots

if TYPE_CHECKING:
    from botrix_toolkit import QueueService

logger = logging.getLogger(__name__)

DEFAULT_TOP_N = 100
DEFAULT_STALL_TIMEOUT_S = 60.0
DEFAULT_WINDOW_MIN = 5
# "jobs per second now" averages over the bins that began in the last this many
# seconds: short, so that it reads 0 soon after the last job ended.
RATE_WINDOW_S = 5
# Go bookkeeping fields that are empty or zero while a job waits: left out of the table.
UNINFORMATIVE_COLUMNS = frozenset({"priority", "updated_at", "deleted_at", "started_at",
                                   "completed_at", "progress", "successful", "failed"})
PENDING_DISPLAY = ("rank", "id", "priority_label", "status", "created_at", "count",
                   "username", "test_mode", "error_msg")
PROCESSING_DISPLAY = ("id", "priority_label", "status", "held_s", "leased_at", "username",
                      "count", "test_mode", "created_at")


@dataclass(frozen=True)
class QueueSnapshot:
    """The queue as one refresh sees it.

    ``stats``: get_queue_stats() (exact counts by level); ``pending``: the first
    ``top_n`` pending jobs (``QueueService.pending_jobs_frame``); ``processing``:
    every held job with ``held_s`` (``QueueService.processing_frame``).
    """

    taken_at: pd.Timestamp
    stats: dict[str, int]
    pending: pd.DataFrame
    processing: pd.DataFrame

    def stalled(self, timeout_s: float) -> int:
        """Jobs held longer than ``timeout_s`` (jobs without a lease are not counted)."""
        held = self.processing["held_s"]
        return int((held > timeout_s).sum())

    def oldest_pending_age_s(self) -> float | None:
        """Age in seconds of the oldest job among the ``top_n`` read, None when none."""
        created = self.pending["created_at"].dropna()
        if created.empty:
            return None
        return max((self.taken_at - created.min()).total_seconds(), 0.0)


def take_snapshot(q: QueueService, top_n: int = DEFAULT_TOP_N) -> QueueSnapshot:
    """Stats, the first ``top_n`` pending jobs and the held jobs: three short reads."""
    stats = q.get_queue_stats()
    pending = q.pending_jobs_frame(limit=top_n)
    processing = q.processing_frame()
    return QueueSnapshot(pd.Timestamp.now(tz="UTC"), stats, pending, processing)


@dataclass(frozen=True)
class Activity:
    """What the recorded events say about the last minutes.

    ``throughput``: analysis.throughput (1 s bins); ``latency``: analysis.latency
    (one row per attempt); counts are state changes in the last 60 s.
    """

    throughput: pd.DataFrame
    latency: pd.DataFrame
    completed_last_minute: int
    failed_last_minute: int
    jobs_per_second: float


def recent_events(events: pd.DataFrame, minutes: float, now: pd.Timestamp) -> pd.DataFrame:
    """The rows of an events frame received in the last ``minutes`` minutes."""
    if events.empty:
        return events
    since = now - pd.Timedelta(minutes=minutes)
    return events[events["received_at"] >= since].reset_index(drop=True)


def activity(events: pd.DataFrame, now: pd.Timestamp) -> Activity:
    """Throughput, latency and the headline rates from an (already windowed) events frame."""
    table = analysis.throughput(events, freq="1s")
    waits = analysis.latency(events)
    last_minute = table[table.index >= now - pd.Timedelta(seconds=60)]
    # Bins that began within the window: none once nothing happened for RATE_WINDOW_S.
    last_seconds = table[table.index > now - pd.Timedelta(seconds=RATE_WINDOW_S)]
    finished = int(last_seconds["completed"].sum() + last_seconds["failed"].sum())
    return Activity(
        throughput=table,
        latency=waits,
        completed_last_minute=int(last_minute["completed"].sum()),
        failed_last_minute=int(last_minute["failed"].sum()),
        jobs_per_second=finished / RATE_WINDOW_S,
    )


def connection_problem(message: str, server: str) -> str:
    """What went wrong reaching ``server``, without naming it again and without a final full stop.

    Errors say "cannot reach <server>: <cause>."; a banner that names the
    server itself wants only the cause, to end with its own punctuation.
    """
    lead = f"cannot reach {server}: "
    if message.lower().startswith(lead.lower()):
        message = message[len(lead):]
    return message.strip().rstrip(".").strip() or "no answer"


def queue_figures(snapshot: QueueSnapshot) -> dict[str, go.Figure]:
    """The figures drawn from the queue itself: the priority distribution."""
    return {"priority": plots.priority_distribution_figure(snapshot.stats)}


def activity_figures(live: Activity) -> dict[str, go.Figure]:
    """Throughput and wait/run latency figures, the same ones the notebooks draw."""
    return {
        "throughput": plots.throughput_figure(live.throughput),
        "wait": plots.latency_figure(live.latency, "wait_s"),
        "run": plots.latency_figure(live.latency, "run_s"),
    }


def _hidden(column: Any) -> bool:
    return column in UNINFORMATIVE_COLUMNS or (isinstance(column, str) and is_secret_key(column))


def display_frame(frame: pd.DataFrame, first: tuple[str, ...]) -> pd.DataFrame:
    """A job frame ready for st.dataframe: secret columns dropped, ``first`` columns first.

    Extra job fields follow. Every text cell is cut to ``cells.MAX_CELL_CHARS``
    and its control and bidi characters escaped; nested values become JSON
    text (st.dataframe shows every cell as text, so HTML in a job is never
    rendered).
    """
    keep = [c for c in first if c in frame.columns]
    rest = [c for c in frame.columns if c not in keep and not _hidden(c)]
    shown = frame[keep + rest].copy()
    for column in shown.columns:
        dtype = shown[column].dtype
        if dtype.kind == "O" or isinstance(dtype, pd.StringDtype):
            shown[column] = shown[column].map(cells.cell, na_action="ignore").astype("string")
    return shown


def filter_jobs(
    frame: pd.DataFrame,
    priorities: list[str] | None = None,
    statuses: list[str] | None = None,
    id_search: str = "",
) -> pd.DataFrame:
    """Rows whose level is in ``priorities``, status in ``statuses``, id contains ``id_search``."""
    keep = pd.Series(True, index=frame.index)
    if priorities:
        keep &= frame["priority_label"].astype("string").isin(priorities).fillna(False)
    if statuses:
        keep &= frame["status"].astype("string").isin(statuses).fillna(False)
    if id_search.strip():
        needle = id_search.strip().lower()
        keep &= frame["id"].astype("string").str.lower().str.contains(needle, regex=False).fillna(False)
    return frame[keep.astype(bool)]


def parse_extra_fields(text: str) -> dict[str, Any]:
    """The add form's extra JSON: empty -> {}, else it must be a JSON object.

    Raises ValueError with a message that names the problem (line and column
    for a syntax error, the type for a non-object, NaN or Infinity, nesting
    deeper than ``MAX_JSON_DEPTH``).
    """
    if not text.strip():
        return {}
    if nests_too_deep(text, MAX_JSON_DEPTH - 1):  # the job's own object is one more level
        raise ValueError(too_deep_message("the extra fields' JSON") + " (the job's own object counts as one)")
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise ValueError(f"extra fields are not valid JSON: {exc.msg} "
                         f"(line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise ValueError(too_deep_message("the extra fields' JSON")) from None
    if not isinstance(value, dict):
        raise ValueError(f"extra fields must be a JSON object like {{\"source\": \"ui\"}}; "
                         f"got a JSON {type(value).__name__}")
    return value


def _refuse_constant(name: str) -> None:
    raise ValueError(f"extra fields hold {name}, which is not a JSON number: give a finite number")
