"""One job's whole life, read for the dashboard: plain data, no Streamlit.

What the server holds now (its fields with secrets redacted, its status,
when it started and ended, its result) beside every event of it that the
dashboard's recorder saw, and how often it was retried.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
from botrix_toolkit.dashboard.cells import cell, shown

from botrix_toolkit import BotrixError, JobNotFoundError
from botrix_toolkit.core.redaction import redact

if TYPE_CHECKING:
    from botrix_toolkit import QueueService

logger = logging.getLogger(__name__)

# The retry count a Worker keeps in the job (botrix_toolkit.core.worker.RETRIES_FIELD).
RETRIES_FIELD = "retries"
EVENT_COLUMNS = ("received_at", "event", "status", "priority", "detail")
# Event data keys shown in the "detail" column, besides job_id and status.
_DETAIL_SKIP = frozenset({"job_id", "status", "priority"})


@dataclass(frozen=True)
class JobLife:
    """A job as the server holds it now and as the recorder saw it change.

    ``started_at``: when it was last claimed (the server's, else the last
    ``running`` event seen); ``completed_at``: when it ended;
    ``fields``: (field, value) rows of the job, secrets shown as ``***`` and
    nested values as JSON text, or None when the job's data is gone;
    ``events``: EVENT_COLUMNS, oldest first; ``result``: its result as JSON
    text, secrets redacted, or None; ``retries``: times it was failed and put
    back (the worker's count where it keeps one, else the requeues seen);
    ``problem``: why the job itself could not be read, or None.
    """

    job_id: str
    status: str | None
    started_at: pd.Timestamp | None
    completed_at: pd.Timestamp | None
    fields: pd.DataFrame | None
    events: pd.DataFrame
    result: str | None
    retries: int
    problem: str | None


def _as_text(value: Any) -> str:
    """A value as the page shows it: cut, escaped, nested values as JSON text."""
    shown_value = cell(value)
    return "" if shown_value is None else str(shown_value)


def job_events(events: pd.DataFrame, job_id: str) -> pd.DataFrame:
    """The rows of an events frame about ``job_id``, oldest first, with a ``detail`` column."""
    if events.empty or "job_id" not in events.columns:
        return pd.DataFrame({column: pd.Series(dtype=object) for column in EVENT_COLUMNS})
    rows = events[events["job_id"].astype("string") == job_id]
    detail = rows["data"].map(lambda data: ", ".join(
        f"{key}: {_as_text(value)}" for key, value in (data or {}).items() if key not in _DETAIL_SKIP
    ) if isinstance(data, dict) else "")
    shown = rows.assign(detail=detail)[list(EVENT_COLUMNS)]
    return shown.sort_values("received_at", kind="stable").reset_index(drop=True)


def _requeues(events: pd.DataFrame) -> int:
    """How often a failed status was followed by a new job_added (Go's requeue)."""
    steps = [("failed" if e == "status_updated" and s == "failed" else e)
             for e, s in zip(events["event"], events["status"]) if not (e == "status_updated" and s == "pending")]
    return sum(1 for before, after in zip(steps, steps[1:]) if before == "failed" and after == "job_added")


def read_job_life(q: QueueService, job_id: str, events: pd.DataFrame) -> JobLife:
    """Everything known of one job: two reads from the server and the recorded events."""
    seen = job_events(events, job_id)
    status = started = ended = fields = result = problem = None
    retries = _requeues(seen)
    try:
        job = q.get_job(job_id)
    except BotrixError as exc:
        problem = str(exc) if not isinstance(exc, JobNotFoundError) else "its data is gone (unknown or expired)"
        try:
            status = q.get_job_status(job_id)
        except BotrixError:
            pass
    else:
        status = job.status
        started = pd.Timestamp(job.started_at) if job.started_at else None
        ended = pd.Timestamp(job.completed_at) if job.completed_at else None
        visible = redact(copy.deepcopy(job.to_dict(redact=True)))
        fields = pd.DataFrame({"field": [shown(name) for name in visible],
                               "value": [_as_text(v) for v in visible.values()]})
        if isinstance(job.extra.get(RETRIES_FIELD), int):
            retries = max(retries, job.extra[RETRIES_FIELD])
    if started is None and status != "pending":
        # the job no longer runs: its last claim, as the recorder saw it
        claims = seen[(seen["event"] == "status_updated") & (seen["status"] == "running")]
        if not claims.empty:
            started = pd.Timestamp(claims["received_at"].iloc[-1])
    try:
        result = shown(json.dumps(redact(json.loads(q.get_job_result(job_id))), ensure_ascii=False), 2000)
    except (BotrixError, ValueError):
        result = None
    return JobLife(job_id, status, started, ended, fields, seen, result, retries, problem)


def job_choices(pending: pd.DataFrame, processing: pd.DataFrame, events: pd.DataFrame,
                limit: int = 200) -> dict[str, str]:
    """Job id -> label for the picker: held jobs, then pending ones, then the most recent in events."""
    choices: dict[str, str] = {}
    for frame, where in ((processing, "processing"), (pending, "pending")):
        for job_id in frame.get("id", pd.Series(dtype="string")).astype("string").dropna():
            choices.setdefault(str(job_id), f"{shown(str(job_id))} · {where}")
    if not events.empty and "job_id" in events.columns:
        recent = events["job_id"].astype("string").dropna()[::-1].drop_duplicates()
        for job_id in recent[:limit]:
            choices.setdefault(str(job_id), f"{shown(str(job_id))} · recent events")
    return dict(list(choices.items())[:limit])
