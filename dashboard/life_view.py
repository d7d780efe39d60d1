"""A job's whole life on one screen: pick a job, see its fields, status, events, result and retries.

Drawn inside the live fragment (views.live_view), so the job's state follows
the queue; the data step is job_life.read_job_life (no Streamlit).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st
from botrix_toolkit.dashboard import job_life, snapshot, state
from botrix_toolkit.dashboard.cells import shown

PICKER_KEY = "life_job"
EVENT_COLUMN_LABELS = {
    "received_at": st.column_config.DatetimeColumn("received (UTC)", format="HH:mm:ss.SSS"),
    "detail": st.column_config.TextColumn("detail", width="large"),
}


def _moment(value: pd.Timestamp | None) -> str:
    return "–" if value is None else f"{value:%H:%M:%S}.{value.microsecond // 1000:03d}"


def job_life_panel(conn: state.Connection, snap: snapshot.QueueSnapshot, events: pd.DataFrame) -> None:
    """A picker of pending, processing and recently seen jobs, and the picked job's life."""
    st.subheader("A job's life")
    choices = job_life.job_choices(snap.pending, snap.processing, events)
    current = st.session_state.get(PICKER_KEY)
    if current and current not in choices:
        # it left the lists (finished, its events aged out): keep showing it
        choices = {current: f"{shown(current)} · picked", **choices}
    picked = st.selectbox(
        "Job", list(choices), index=None, format_func=lambda job_id: choices.get(job_id, job_id),
        key=PICKER_KEY, placeholder="a pending, processing or recently seen job",
        help="its fields, status, every event the dashboard recorded, its result and retries",
    )
    if not picked:
        return
    life = job_life.read_job_life(conn.q, picked, events)
    cols = st.columns(4)
    cols[0].metric("status", shown(life.status or "unknown"))
    cols[1].metric("started (UTC)", _moment(life.started_at), help="when a worker claimed it")
    cols[2].metric("ended (UTC)", _moment(life.completed_at), help="when it completed, failed or was cancelled")
    cols[3].metric("retries", f"{life.retries:,}", help="times it failed and was put back in the queue")
    if life.problem:
        st.warning(f"Job {shown(picked)}: {shown(life.problem)}.")
    left, right = st.columns([2, 3])
    with left:
        st.markdown("**Fields** (secrets shown as `***`)")
        if life.fields is not None:
            st.dataframe(life.fields, hide_index=True, key="life_fields")
        st.markdown("**Result**")
        if life.result is None:
            st.caption("no result saved")
        else:
            st.code(life.result, language="json")
    with right:
        st.markdown(f"**Events** · {len(life.events):,} recorded by this dashboard")
        if life.events.empty:
            st.caption("none recorded: the dashboard records events from when it started, for the "
                       "last minutes chosen in the sidebar")
        else:
            st.dataframe(life.events, hide_index=True, column_config=EVENT_COLUMN_LABELS, key="life_events")
