"""What the page shows: headline figures, charts and the job tables, refreshed live.

Everything data-driven is drawn by one fragment that reruns every
``refresh_s`` seconds while live updates are on, so the page never reloads as
a whole. A refresh reads three short things (see ``snapshot.take_snapshot``)
and the recorder's last minutes of events; a failure to reach the server is a
message, and the next refresh tries again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd
import streamlit as st
from botrix_toolkit.dashboard import activity_panel, controls, life_view, snapshot, state

from botrix_toolkit import BotrixError, QueueGroup, ServerConnectionError
from botrix_toolkit.frames import analysis, plots

if TYPE_CHECKING:
    from streamlit.elements.lib.column_config_utils import ColumnConfigMappingInput

logger = logging.getLogger(__name__)

_PENDING_SHOWN = "botrix_pending_shown"
_PROCESSING_SHOWN = "botrix_processing_shown"
_TABLE_GENERATION = "botrix_table_generation"
PRIORITY_CHOICES = list(analysis.PRIORITY_LEVELS)
STATUS_CHOICES = ["pending", "running"]
CHART_HEIGHT = 340
# Friendlier headers; the frames keep their documented column names.
COLUMN_LABELS: ColumnConfigMappingInput = {
    "rank": st.column_config.NumberColumn("#", help="position in the queue, 0 = served next"),
    "id": st.column_config.TextColumn("id", width=290),
    "priority_label": "priority",
    "held_s": st.column_config.NumberColumn("held (s)", format="%.1f"),
    "created_at": st.column_config.DatetimeColumn("created (UTC)", format="YYYY-MM-DD HH:mm:ss"),
    "leased_at": st.column_config.DatetimeColumn("leased (UTC)", format="HH:mm:ss"),
    "test_mode": "test",
    "error_msg": "error",
}


@dataclass(frozen=True)
class PageOptions:
    """The sidebar's choices for this page run."""

    settings: state.Settings
    live: bool
    refresh_s: float
    window_min: float
    stall_timeout_s: float
    top_n: int


def connection_panel(settings: state.Settings) -> state.Connection | None:
    """Sidebar lines naming the server (password removed); None when it cannot be set up."""
    st.sidebar.subheader("Server")
    try:
        conn = state.connection(*state.settings_key(settings))
    except BotrixError as exc:
        st.sidebar.error(f"No server: {exc}")
        return None
    version = state.server_version(*state.settings_key(settings))
    st.sidebar.markdown(f"`{conn.display_url}`")
    where = "embedded Valkey" if conn.embedded else "external server"
    st.sidebar.caption(f"{version or 'version unknown'} · {where} · prefix `{settings.prefix}`")
    return conn


ALL_QUEUES = "all queues"


def all_queues_view(settings: state.Settings) -> None:
    """Every queue of ``settings.prefixes`` side by side: counts and priority charts."""
    try:
        group = QueueGroup([state.connection(settings.url, prefix, settings.embedded).q
                            for prefix in settings.prefixes])
        stats = group.stats_frame()
    except BotrixError as exc:
        st.error(f"Cannot read the queues: {exc}", icon=":material/cloud_off:")
        return
    st.subheader(f"{len(settings.prefixes)} queues")
    st.dataframe(stats.drop(columns=["ttl_seconds"], errors="ignore"), hide_index=True)
    for start in range(0, len(stats), 3):
        for column, (_, row) in zip(st.columns(3), stats.iloc[start : start + 3].iterrows()):
            with column:
                figure = plots.priority_distribution_figure(row.to_dict())
                figure.update_layout(title=f"{row['queue']}: pending by priority")
                st.plotly_chart(figure, key=f"priority-{row['queue']}")


def unreachable_message(conn: state.Connection, exc: BotrixError) -> None:
    """A friendly error naming the server once, never a traceback; the live refresh keeps trying."""
    st.error(
        f"Cannot reach the queue server at {conn.display_url}: "
        f"{snapshot.connection_problem(str(exc), conn.display_url)}. "
        "The page retries on every refresh and recovers when the server is back.",
        icon=":material/cloud_off:",
    )


# Whether the last refresh reached the server, and what the actions were drawn with.
_REACHABLE = "botrix_server_reachable"
_ACTIONS_DRAWN_REACHABLE = "botrix_actions_drawn_reachable"


def server_reachable() -> bool:
    """What the last refresh found: False while the server cannot be reached."""
    return bool(st.session_state.get(_REACHABLE, True))


def actions_drawn(reachable: bool) -> None:
    """Notes what the actions (the add form) were drawn with, for the live refresh to compare."""
    st.session_state[_ACTIONS_DRAWN_REACHABLE] = reachable


def _note_reachable(reachable: bool) -> None:
    """Records the refresh's finding; redraws the whole page when the actions show the other."""
    st.session_state[_REACHABLE] = reachable
    drawn = st.session_state.get(_ACTIONS_DRAWN_REACHABLE)
    if drawn is not None and drawn != reachable:
        st.session_state[_ACTIONS_DRAWN_REACHABLE] = reachable  # once per change
        st.rerun(scope="app")


def live_view(conn: state.Connection, options: PageOptions) -> None:
    """Headline figures, charts, tables and a job's life, redrawn every ``refresh_s`` s while live."""

    @st.fragment(run_every=options.refresh_s if options.live else None)
    def _refresh() -> None:
        try:
            snap = snapshot.take_snapshot(conn.q, options.top_n)
        except BotrixError as exc:
            unreachable_message(conn, exc)
            _note_reachable(not isinstance(exc, ServerConnectionError))
            return
        _note_reachable(True)
        recorded = _recorded_events(options)
        events = None if recorded is None else \
            snapshot.recent_events(recorded.events, options.window_min, snap.taken_at)
        live = None if events is None else snapshot.activity(events, snap.taken_at)
        _headline(snap, live, options)
        _charts(snap, live, recorded, options)
        _tables(conn, snap, options)
        life_view.job_life_panel(conn, snap, events if events is not None else pd.DataFrame())
        st.caption(f"updated {snap.taken_at:%H:%M:%S} UTC"
                   + ("" if options.live else " · live updates paused"))

    _refresh()


def _recorded_events(options: PageOptions) -> activity_panel.LiveEvents | None:
    """Everything the shared recorder holds, and since when it holds every event; None if it cannot record."""
    try:
        recording = state.live_recording(*state.settings_key(options.settings))
    except ServerConnectionError as exc:
        logger.info("event recorder not running: %s", exc)
        return None
    recorded = recording.recorder.snapshot()
    events = recorded.frame()
    since = recording.started_at
    if recorded.counters.get("dropped_oldest") and not events.empty:
        since = max(since, events["received_at"].min())  # the oldest were dropped: complete from here on
    return activity_panel.LiveEvents(events, since)


def _headline(snap: snapshot.QueueSnapshot, live: snapshot.Activity | None,
              options: PageOptions) -> None:
    stats = snap.stats
    cols = st.columns(5)
    cols[0].metric("pending", f"{stats['queue_length']:,}")
    cols[1].metric("high", f"{stats['high_priority']:,}")
    cols[2].metric("normal", f"{stats['normal_priority']:,}")
    cols[3].metric("low", f"{stats['low_priority']:,}")
    age = snap.oldest_pending_age_s()
    cols[4].metric("oldest pending", "–" if age is None else _duration(age),
                   help=f"age of the oldest job among the first {options.top_n} in dequeue order")
    cols = st.columns(5)
    cols[0].metric("processing", f"{stats['processing_count']:,}")
    stalled = snap.stalled(options.stall_timeout_s)
    cols[1].metric("stalled", f"{stalled:,}",
                   help=f"held longer than {options.stall_timeout_s:g} s without a lease renewal")
    if live is None:
        for col, label in zip(cols[2:], ("completed (1 min)", "failed (1 min)", "jobs/s now")):
            col.metric(label, "–", help="no event recorder: server unreachable")
        return
    cols[2].metric("completed (1 min)", f"{live.completed_last_minute:,}")
    cols[3].metric("failed (1 min)", f"{live.failed_last_minute:,}")
    cols[4].metric("jobs/s now", f"{live.jobs_per_second:,.1f}",
                   help=f"completed + failed per second over the last {snapshot.RATE_WINDOW_S} s")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _chart(where, figure, key: str) -> None:
    figure.update_layout(height=CHART_HEIGHT)
    where.plotly_chart(figure, key=key)


def _charts(snap: snapshot.QueueSnapshot, live: snapshot.Activity | None,
            recorded: activity_panel.LiveEvents | None, options: PageOptions) -> None:
    left, right = st.columns(2)
    _chart(left, snapshot.queue_figures(snap)["priority"], "chart_priority")
    _chart(right, _depth_figure(snap, options), "chart_depth")
    activity_panel.activity_charts(options.settings.history, options.settings.prefix, live, recorded,
                                   snap.taken_at)


def _depth_figure(snap: snapshot.QueueSnapshot, options: PageOptions):
    """Queue depth from the refreshes of every tab of this dashboard (state.DepthHistory)."""
    history = state.depth_history(*state.settings_key(options.settings))
    history.record(snap.taken_at, snap.stats)
    return plots.queue_depth_figure(analysis.queue_depth(history.frame()))


def _tables(conn: state.Connection, snap: snapshot.QueueSnapshot, options: PageOptions) -> None:
    st.subheader("Jobs")
    left, middle, right = st.columns([2, 2, 3])
    priorities = left.multiselect("Priority", PRIORITY_CHOICES, key="filter_priority")
    statuses = middle.multiselect("Status", STATUS_CHOICES, key="filter_status")
    search = right.text_input("Search by id", key="filter_id", placeholder="part of a job id")

    generation = st.session_state.setdefault(_TABLE_GENERATION, 0)
    pending = _stable_while_selected(f"pending_table_{generation}", _PENDING_SHOWN,
                                     snapshot.filter_jobs(snap.pending, priorities, statuses, search))
    processing = _stable_while_selected(
        f"processing_table_{generation}", _PROCESSING_SHOWN,
        snapshot.filter_jobs(snap.processing, priorities, statuses, search))

    shown_pending = f"first {options.top_n:,} in dequeue order" if snap.stats["queue_length"] > \
        options.top_n else "all"
    st.markdown(f"**Pending** · {len(pending):,} shown ({shown_pending}, "
                f"{snap.stats['queue_length']:,} in the queue)")
    pending_event = st.dataframe(
        snapshot.display_frame(pending, snapshot.PENDING_DISPLAY), key=f"pending_table_{generation}",
        on_select="rerun", selection_mode="multi-row", hide_index=True, height=300,
        column_config=COLUMN_LABELS,
    )
    st.markdown(f"**Processing** · {len(processing):,} held "
                f"(stalled after {options.stall_timeout_s:g} s)")
    processing_event = st.dataframe(
        snapshot.display_frame(processing, snapshot.PROCESSING_DISPLAY),
        key=f"processing_table_{generation}", on_select="rerun", selection_mode="multi-row",
        hide_index=True, height=200,
        column_config=COLUMN_LABELS,
    )
    if search.strip() and pending.empty and processing.empty:
        _lookup_outside_tables(conn, search.strip())

    selected = [*pending.iloc[pending_event.selection.rows]["id"],
                *processing.iloc[processing_event.selection.rows]["id"]]
    if selected:
        st.caption("The tables hold still while rows are selected.")
        if st.button(f"Cancel {len(selected)} selected job(s)", type="primary",
                     key="cancel_selected"):
            controls.cancel_selected(conn, [str(job_id) for job_id in selected])
            # a new key clears the selection
            st.session_state[_TABLE_GENERATION] = generation + 1
            st.rerun(scope="app")


def _stable_while_selected(table_key: str, shown_key: str, fresh: pd.DataFrame) -> pd.DataFrame:
    """The rows last shown while some are selected (row numbers must keep meaning the
    same jobs until the user acts), else ``fresh``."""
    table_state = st.session_state.get(table_key)
    selection = getattr(table_state, "selection", None) if table_state is not None else None
    rows = (selection or {}).get("rows", []) if isinstance(selection, dict) else \
        getattr(selection, "rows", [])
    if rows and shown_key in st.session_state:
        kept = st.session_state[shown_key]
        if all(row < len(kept) for row in rows):
            return kept
    st.session_state[shown_key] = fresh
    return fresh


def _lookup_outside_tables(conn: state.Connection, job_id: str) -> None:
    """An id not among the rows read: say what the server knows about it (two GETs)."""
    try:
        status = conn.q.get_job_status(job_id)
    except BotrixError:
        st.caption(f"No job with id containing {job_id!r} among the rows shown; "
                   "no job has exactly that id either.")
        return
    st.caption(f"Job {job_id!r} is not among the rows shown; its status is **{status}**.")
