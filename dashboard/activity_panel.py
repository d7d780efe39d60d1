"""The activity charts (throughput, wait, run) over a chosen range, live and from the monitor's history.

Without a usable history folder the page says why in one line and draws the
live charts as before. With one, a range picker offers ``history_view.RANGES``
and a custom range; the data step is ``frames.history_view`` (no Streamlit),
and a folder that cannot be read is one line on the page, never a traceback.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd
import streamlit as st
from botrix_toolkit.dashboard import snapshot

from botrix_toolkit.core.errors import BotrixError
from botrix_toolkit.frames import history_view

if TYPE_CHECKING:
    import plotly.graph_objects as go

logger = logging.getLogger(__name__)

RANGE_KEY = "activity_range"
DEFAULT_RANGE = "5 minutes"
CHART_HEIGHT = 340


@dataclass(frozen=True)
class LiveEvents:
    """What the dashboard's recorder holds: every event from ``since`` on (``frames.EVENT_COLUMNS``)."""

    events: pd.DataFrame
    since: pd.Timestamp


def activity_charts(history: str | None, prefix: str, live: snapshot.Activity | None,
                    recorded: LiveEvents | None, now: pd.Timestamp) -> None:
    """The three activity charts: over the chosen range with a history, else the live window."""
    status = history_view.history_status(history, prefix, now)
    if not status.usable:
        (st.caption if history is None else st.warning)(status.message)
        _live_charts(live)
        return
    st.caption(status.message)
    choice = st.radio("Activity over the last", [*history_view.RANGES, history_view.CUSTOM_RANGE],
                      index=list(history_view.RANGES).index(DEFAULT_RANGE), horizontal=True, key=RANGE_KEY)
    bounds = _custom_bounds(now) if choice == history_view.CUSTOM_RANGE else \
        history_view.range_bounds(str(choice), now)
    if bounds is None:
        return
    try:
        view = history_view.activity_range(
            status.folder, prefix, *bounds,
            live_events=None if recorded is None else recorded.events,
            live_since=None if recorded is None else recorded.since, stored_until=status.covered_until,
        )
    except BotrixError as exc:
        logger.warning("history view failed: %s", exc)
        st.error(f"{exc}. Showing live minutes only.", icon=":material/folder_off:")
        _live_charts(live)
        return
    figures = history_view.activity_range_figures(view)
    what = "raw events" if view.source == "events" else "per-minute rollups"
    st.caption(f"{view.start:%Y-%m-%d %H:%M} to {view.end:%Y-%m-%d %H:%M} UTC · {what} "
               f"({view.stored_rows:,} rows from the folder, {view.live_rows:,} live events) · "
               f"bins of {_span(view.bin)}")
    _draw(figures)


def _live_charts(live: snapshot.Activity | None) -> None:
    if live is None:
        st.info("Live charts start when the event recorder can subscribe to the server.")
        return
    _draw(snapshot.activity_figures(live))


def _draw(figures: dict[str, go.Figure]) -> None:
    for key in ("throughput", "wait", "run"):
        figures[key].update_layout(height=CHART_HEIGHT)
    st.plotly_chart(figures["throughput"], key="chart_throughput")
    left, right = st.columns(2)
    left.plotly_chart(figures["wait"], key="chart_wait")
    right.plotly_chart(figures["run"], key="chart_run")


def _custom_bounds(now: pd.Timestamp) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """Two dates and times (UTC) from the page; None, with one line saying why, when they do not make a range."""
    default_start = (now - pd.Timedelta(days=1)).floor("min")
    cols = st.columns(4)
    start_day = cols[0].date_input("From (UTC)", value=default_start.date(), key="range_from_day")
    start_time = cols[1].time_input("at", value=default_start.time(), key="range_from_time")
    end_day = cols[2].date_input("To (UTC)", value=now.date(), key="range_to_day")
    end_time = cols[3].time_input("at ", value=now.floor("min").time(), key="range_to_time")
    if not all(isinstance(v, dt.date) for v in (start_day, end_day)) or \
            not all(isinstance(v, dt.time) for v in (start_time, end_time)):
        st.warning("Give both a start and an end date and time.")
        return None
    start = pd.Timestamp(dt.datetime.combine(start_day, start_time), tz="UTC")
    end = pd.Timestamp(dt.datetime.combine(end_day, end_time), tz="UTC")
    if not end > start:
        st.warning(f"The range must end after it starts ({start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M}).")
        return None
    return start, end


def _span(step: pd.Timedelta) -> str:
    seconds = int(step.total_seconds())
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"
