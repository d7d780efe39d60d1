"""The botrix queue dashboard: page layout only (``botrix dashboard`` runs it).

Settings come from the environment (see state.py); the widgets live in
views.py (what is shown) and controls.py (actions). Installed as the package
``botrix_toolkit.dashboard``, and imported only by that name.
"""

from __future__ import annotations

import dataclasses

import streamlit as st
from botrix_toolkit.dashboard import auth, controls, snapshot, state, views

from botrix_toolkit.core.errors import BotrixError

st.set_page_config(page_title="botrix queue", page_icon=":material/queue:", layout="wide")
try:
    settings = state.settings_from_env()
except BotrixError as exc:  # a blank password: refused, never an open page
    st.error(str(exc))
    st.stop()
if not auth.require_password(settings.password):
    st.stop()

st.title("botrix queue")
if len(settings.prefixes) > 1:
    shown = st.sidebar.selectbox("Queue", [*settings.prefixes, views.ALL_QUEUES], key="queue")
    if shown == views.ALL_QUEUES:
        views.all_queues_view(settings)
        st.stop()
    settings = dataclasses.replace(settings, prefix=shown)
conn = views.connection_panel(settings)

st.sidebar.subheader("Live view")
live = st.sidebar.toggle("Live updates", value=True, key="live",
                         help="redraw figures and tables every few seconds")
refresh_s = st.sidebar.select_slider("Refresh every (s)", options=[1, 2, 5], value=2,
                                     key="refresh_s")
# Whole numbers in float widgets: Streamlit puts a float widget back to its default when
# a crafted message sends NaN or infinity, where an int widget fails before this script runs.
window_min = st.sidebar.number_input("Analyse the last (minutes)", min_value=1.0, max_value=60.0,
                                     value=float(snapshot.DEFAULT_WINDOW_MIN), step=1.0,
                                     format="%.0f", key="window_min")
stall_timeout_s = st.sidebar.number_input(
    "Stalled after (s held)", min_value=1.0, value=snapshot.DEFAULT_STALL_TIMEOUT_S, step=10.0,
    key="stall_timeout_s", help="lease timeout: jobs held longer count as stalled")
top_n = st.sidebar.number_input("Pending jobs shown", min_value=10.0, max_value=5000.0,
                                value=float(snapshot.DEFAULT_TOP_N), step=50.0, format="%.0f",
                                key="top_n")

# Checked again here, whatever the Streamlit version: a number that is not finite is never used.
window_min = controls.finite_setting(window_min, snapshot.DEFAULT_WINDOW_MIN, "Analyse the last (minutes)")
stall_timeout_s = controls.finite_setting(stall_timeout_s, snapshot.DEFAULT_STALL_TIMEOUT_S,
                                          "Stalled after (s held)")
top_n = controls.finite_setting(top_n, snapshot.DEFAULT_TOP_N, "Pending jobs shown")

if conn is None:
    st.stop()

controls.show_reports()
views.live_view(conn, views.PageOptions(
    settings=settings, live=live, refresh_s=float(refresh_s), window_min=float(window_min),
    stall_timeout_s=float(stall_timeout_s), top_n=int(top_n),
))

st.subheader("Actions")
add_tab, cancel_tab, maintenance_tab = st.tabs(["Add jobs", "Cancel a job", "Maintenance"])
reachable = views.server_reachable()
views.actions_drawn(reachable)
with add_tab:
    controls.add_jobs_form(conn, enabled=reachable)
with cancel_tab:
    controls.cancel_by_id_form(conn)
with maintenance_tab:
    controls.maintenance(conn, float(stall_timeout_s))
