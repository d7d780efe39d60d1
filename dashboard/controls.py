"""The page's actions: add jobs, cancel, clear, recover stalled jobs, prune orphans.

Every action validates its input before writing anything and reports what it
did, or a friendly error (unknown id, bad JSON, server down), never a
traceback. A successful action reruns the page so every figure shows its
effect; its report is kept in the session and shown after the rerun.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import streamlit as st
from botrix_toolkit.dashboard import cells, snapshot, state

from botrix_toolkit import BotrixError, InvalidInputError, JobNotFoundError, ServerConnectionError

logger = logging.getLogger(__name__)

MAX_COPIES = 100_000
_REPORTS = "botrix_reports"
# Fields the add form sets itself; the extra JSON may not set them too.
_FORM_FIELDS = frozenset({"id", "status", "priority", "count", "test_mode", "username"})


def report(kind: str, text: str) -> None:
    """Keep a message ("success", "error", "info") to show after the next rerun."""
    st.session_state.setdefault(_REPORTS, []).append((kind, text))


def show_reports() -> None:
    """Show, once, the messages kept by the last actions."""
    for kind, text in st.session_state.pop(_REPORTS, []):
        getattr(st, kind)(text)


def friendly(exc: BotrixError) -> str:
    """One line for a person: what went wrong, no traceback."""
    if isinstance(exc, ServerConnectionError):
        return f"The queue server is unreachable, nothing was changed: {exc}"
    if isinstance(exc, JobNotFoundError):
        return f"Unknown job: {exc}"
    return str(exc)


def finite_setting(value: Any, default: float, label: str) -> float:
    """A sidebar number, or ``default`` with a warning when it is NaN, infinite or missing."""
    number = cells.finite_number(value)
    if number is None:
        st.sidebar.warning(f"{label}: {cells.shown(str(value))} is not a finite number; "
                           f"using {default:g}.")
        return float(default)
    return number


def _attempt(action: Callable[[], Any]) -> tuple[bool, Any]:
    """(True, result) or (False, None) after showing a friendly error."""
    try:
        return True, action()
    except BotrixError as exc:
        logger.info("dashboard action failed: %s", exc)
        st.error(friendly(exc))
        return False, None


# -- adding ----------------------------------------------------------------------

def add_jobs_form(conn: state.Connection, enabled: bool = True) -> None:
    """Priority, count, test mode, username, extra JSON fields and copies, added in bulk.

    Disabled (``enabled`` False) while the server cannot be reached: nothing a
    person types there could be added.
    """
    if not enabled:
        st.warning("The queue server cannot be reached: adding jobs is disabled until it answers.",
                   icon=":material/cloud_off:")
    off = not enabled
    with st.form("add_jobs", clear_on_submit=False):
        left, right = st.columns(2)
        priority = left.selectbox("Priority", ["high", "normal", "low"], index=1,
                                  key="add_priority", disabled=off)
        # float widgets showing whole numbers: see the sidebar's in app.py
        count = right.number_input("Accounts per job (count)", min_value=1.0, value=1.0, step=1.0,
                                   format="%.0f", key="add_count", disabled=off)
        username = left.text_input("Username", key="add_username", disabled=off)
        copies = right.number_input("How many copies", min_value=1.0, max_value=float(MAX_COPIES),
                                    value=1.0, step=1.0, format="%.0f", key="add_copies", disabled=off)
        test_mode = st.checkbox("Test mode", key="add_test_mode", disabled=off)
        extra_text = st.text_area("Extra fields (JSON object, optional)", key="add_extra",
                                  placeholder='{"source": "dashboard"}', height=80,
                                  disabled=off)
        submitted = st.form_submit_button("Add jobs", type="primary", disabled=off)
    if not submitted:
        return
    # The widgets' bounds hold in the browser only: a crafted message can send NaN, 1e300, -1.
    problems = [f"{label} must be a whole number from {low:,} to {high:,}"
                for label, value, low, high in (("count", count, 1, 2**63 - 1),
                                                ("copies", copies, 1, MAX_COPIES))
                if not _whole_between(value, low, high)]
    if problems:
        st.error(f"Nothing added: {'; '.join(problems)}.")
        return
    try:
        extra = snapshot.parse_extra_fields(extra_text)
        clashes = sorted(_FORM_FIELDS & extra.keys())
        if clashes:
            raise ValueError(f"extra fields may not set {', '.join(clashes)}: "
                             "the form sets those")
    except ValueError as exc:
        st.error(f"Nothing added: {exc}")
        return
    job = {**extra, "priority": priority, "count": int(count), "test_mode": bool(test_mode),
           "username": username.strip()}
    total = int(copies)
    bar = st.progress(0.0, text=f"adding {total:,} job(s)…")

    def progress(done: int, of: int) -> None:
        bar.progress(done / of, text=f"added {done:,} of {of:,}")

    ok, ids = _attempt(lambda: conn.q.add_jobs((dict(job) for _ in range(total)),
                                               progress=progress))
    bar.empty()
    if ok:
        first = f" (first id {ids[0]})" if ids else ""
        report("success", f"Added {len(ids):,} {priority}-priority job(s){first}.")
        st.rerun()


def _whole_between(value: Any, low: int, high: int) -> bool:
    number = cells.finite_number(value)
    return number is not None and number == int(number) and low <= number <= high


# -- cancelling ------------------------------------------------------------------

def cancel_by_id_form(conn: state.Connection) -> None:
    """Cancel one job by id; an unknown id is a friendly error."""
    with st.form("cancel_by_id"):
        job_id = st.text_input("Job id", key="cancel_id")
        submitted = st.form_submit_button("Cancel job")
    if not submitted:
        return
    job_id = job_id.strip()
    if not job_id:
        st.error("Enter the id of the job to cancel.")
        return
    try:
        conn.q.cancel_job(job_id)
    except JobNotFoundError:
        st.error(f"Unknown job id {job_id!r}: no pending or running job has it.")
        return
    except InvalidInputError as exc:
        st.error(f"Not a job id: {exc}")
        return
    except BotrixError as exc:
        st.error(friendly(exc))
        return
    report("success", f"Cancelled job {cells.shown(job_id)}.")
    st.rerun()


def cancel_selected(conn: state.Connection, job_ids: list[str]) -> None:
    """Cancel the jobs selected in the tables; reports how many were still there."""
    try:
        done = conn.q.cancel_jobs(job_ids)
    except BotrixError as exc:
        report("error", friendly(exc))
        return
    missed = len(job_ids) - len(done)
    tail = f"; {missed} had already finished or gone" if missed else ""
    report("success", f"Cancelled {len(done)} selected job(s){tail}.")


# -- maintenance -----------------------------------------------------------------

@st.dialog("Clear the queue")
def _confirm_clear(conn: state.Connection, pending: int) -> None:
    st.write(f"This cancels all **{pending:,}** pending job(s) "
             "(their status becomes *cancelled*). Jobs being processed are not touched.")
    left, right = st.columns(2)
    if left.button(f"Cancel {pending:,} jobs", type="primary", key="confirm_clear"):
        bar = st.progress(0.0)
        try:
            removed = conn.q.clear_queue(
                progress=lambda done, total: bar.progress(done / max(total, 1)))
        except BotrixError as exc:
            report("error", friendly(exc))
        else:
            report("success", f"Cleared the queue: {removed:,} job(s) cancelled.")
        st.rerun()
    if right.button("Keep them", key="keep_queue"):
        st.rerun()


def maintenance(conn: state.Connection, stall_timeout_s: float) -> None:
    """Clear the queue (after confirmation), recover stalled jobs, prune orphans."""
    col_clear, col_recover, col_prune = st.columns(3)
    if col_clear.button("Clear the queue…", key="clear_queue"):
        ok, stats = _attempt(conn.q.get_queue_stats)
        if ok:
            _confirm_clear(conn, stats["queue_length"])
    if col_recover.button(f"Recover stalled (> {stall_timeout_s:g} s)", key="recover_stalled"):
        ok, ids = _attempt(lambda: conn.q.recover_stalled(stall_timeout_s))
        if ok:
            report("success" if ids else "info",
                   f"Recovered {len(ids)} stalled job(s) into the queue." if ids
                   else f"No job held longer than {stall_timeout_s:g} s: nothing recovered.")
            st.rerun()
    if col_prune.button("Prune orphans", key="prune_orphans"):
        ok, ids = _attempt(conn.q.prune_orphans)
        if ok:
            report("success" if ids else "info",
                   f"Pruned {len(ids)} orphaned id(s) (job data expired) from the queue." if ids
                   else "No orphans: every queued id still has its job data.")
            st.rerun()
