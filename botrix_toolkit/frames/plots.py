"""Plotly figures of the queue: analysis frame in, ``plotly.graph_objects.Figure`` out.

Notebooks and the dashboard call these same functions on the same frames, so a
chart looks the same everywhere. Figures are built only from aggregate columns
(counts and durations), never from a job's ``data``, so no secret can reach a
chart. Each figure sets a fixed ``uirevision``: a live dashboard that redraws it
every few seconds keeps the user's zoom and legend choices.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from functools import cache
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from botrix_toolkit.core.errors import InvalidInputError
from botrix_toolkit.frames.analysis import PRIORITY_LEVELS, THROUGHPUT_COLUMNS, require_columns

logger = logging.getLogger(__name__)

# One colour per priority level, used by every figure that splits by priority.
PRIORITY_COLORS: dict[str, str] = {"high": "#d62728", "normal": "#1f77b4", "low": "#7f7f7f"}
PROCESSING_COLOR = "#ff7f0e"
THROUGHPUT_COLORS: dict[str, str] = {
    "added": "#1f77b4", "started": "#9467bd", "completed": "#2ca02c", "failed": "#d62728",
    "cancelled": "#7f7f7f", "requeued": "#ff7f0e", "recovered": "#17becf",
}
TEMPLATE = "plotly_white"
# The parts of TEMPLATE these figures use: 2-D axes and the trace types drawn
# here. Plotly validates a whole template for every figure made with it, and
# plotly_white's 3-D, map and other trace defaults cost ~20 ms a figure, on
# every dashboard refresh, to change nothing that is drawn.
_DRAWN_LAYOUT = ("annotationdefaults", "autotypenumbers", "colorway", "font", "hoverlabel", "hovermode",
                 "paper_bgcolor", "plot_bgcolor", "shapedefaults", "title", "xaxis", "yaxis")
_DRAWN_TRACES = ("bar", "box", "scatter")
NO_DATA_TEXT = "no data yet"
_STATS_KEYS = {"high": "high_priority", "normal": "normal_priority", "low": "low_priority"}
# metric -> (title, axis label)
_LATENCY_METRICS = {"wait_s": ("Wait in queue by priority", "wait, added to running (s)"),
                    "run_s": ("Run time by priority", "run, running to end (s)")}
# The least time the depth chart's x axis spans: a few samples are not a sub-second axis.
DEPTH_MIN_SPAN = pd.Timedelta(seconds=60)


@cache
def _drawn_template() -> dict[str, Any]:
    whole = pio.templates[TEMPLATE].to_plotly_json()
    return {"layout": {key: value for key, value in whole["layout"].items() if key in _DRAWN_LAYOUT},
            "data": {key: value for key, value in whole.get("data", {}).items() if key in _DRAWN_TRACES}}


def _figure(name: str, title: str, x_title: str, y_title: str) -> go.Figure:
    """An empty figure with the shared look; ``name`` keys the uirevision."""
    return go.Figure(layout={
        "template": _drawn_template(),
        "title": {"text": title},
        "xaxis": {"title": {"text": x_title}},
        "yaxis": {"title": {"text": y_title}},
        "uirevision": f"botrix-{name}",
        "legend": {"title": {"text": ""}},
        "margin": {"l": 60, "r": 20, "t": 60, "b": 50},
    })


def _no_data(figure: go.Figure) -> go.Figure:
    figure.add_annotation(text=NO_DATA_TEXT, showarrow=False, xref="paper", yref="paper",
                          x=0.5, y=0.5, font={"size": 16, "color": "#888888"})
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False)
    return figure


def priority_distribution_figure(stats: pd.DataFrame | Mapping[Any, Any]) -> go.Figure:
    """Bar chart of pending jobs per priority level.

    ``stats`` is a ``get_queue_stats()`` dict or a stats frame (its last row, the
    latest snapshot, is drawn). One bar trace per level, named high/normal/low.
    """
    figure = _figure("priority-distribution", "Pending jobs by priority", "priority", "jobs")
    latest: Mapping[Any, Any]
    if isinstance(stats, pd.DataFrame):
        if stats.empty:
            return _no_data(figure)
        latest = stats.iloc[-1].to_dict()
    else:
        latest = stats
    missing = [key for key in _STATS_KEYS.values() if key not in latest]
    if missing:
        raise InvalidInputError(f"stats has no {missing[0]!r}; expected keys "
                                f"{list(_STATS_KEYS.values())}")
    counts = {level: int(latest[key]) for level, key in _STATS_KEYS.items()}
    for level, count in counts.items():
        figure.add_trace(go.Bar(x=[level], y=[count], name=level, text=[count],
                                marker_color=PRIORITY_COLORS[level], showlegend=False))
    if not any(counts.values()):
        # An empty queue: a 0..1 axis and a word, not plotly's -1..1 around nothing.
        figure.update_yaxes(range=[0, 1])
        figure.add_annotation(text="queue empty", showarrow=False, xref="paper", yref="paper",
                              x=0.5, y=0.5, font={"color": "#888", "size": 16})
    return figure


def _bin_seconds(index: pd.Index) -> float:
    """Length of one throughput bin: the index's freq, else its smallest step, else 1 s."""
    freq = getattr(index, "freq", None)
    if freq is not None:
        return pd.Timedelta(freq).total_seconds()
    steps = pd.Series(index).diff().dropna()
    steps = steps[steps > pd.Timedelta(0)]
    return steps.min().total_seconds() if not steps.empty else 1.0


def throughput_figure(
    throughput_frame: pd.DataFrame, bin_seconds: float | None = None
) -> go.Figure:
    """Lines of jobs per second for each series of a ``throughput()`` frame.

    Counts are divided by the bin length (``bin_seconds``, else taken from the
    index), so the y axis reads jobs/s whatever ``freq`` made the frame.
    """
    figure = _figure("throughput", "Throughput", "time (UTC)", "jobs per second")
    series = [name for name in THROUGHPUT_COLUMNS if name in throughput_frame.columns]
    if throughput_frame.empty or not series:
        return _no_data(figure)
    seconds = bin_seconds if bin_seconds is not None else _bin_seconds(throughput_frame.index)
    for name in series:
        figure.add_trace(go.Scatter(
            x=throughput_frame.index, y=throughput_frame[name].astype("float64") / seconds,
            name=name, mode="lines", line={"color": THROUGHPUT_COLORS[name], "shape": "hv"},
        ))
    return figure


def latency_figure(latency_frame: pd.DataFrame, metric: str = "wait_s") -> go.Figure:
    """Box plot per priority level of ``wait_s`` or ``run_s`` from a ``latency()`` frame."""
    if metric not in _LATENCY_METRICS:
        raise InvalidInputError(f"metric must be one of {list(_LATENCY_METRICS)}; got {metric!r}")
    title, axis_label = _LATENCY_METRICS[metric]
    figure = _figure(f"latency-{metric}", title, "priority", axis_label)
    require_columns(latency_frame, ("priority_label", metric), "latency")
    levels = latency_frame["priority_label"].astype("string")
    values = latency_frame[metric].astype("float64")
    for level in PRIORITY_LEVELS:
        chosen = values[(levels == level).fillna(False) & values.notna()]
        if chosen.empty:
            continue
        figure.add_trace(go.Box(y=chosen.to_numpy(), name=level, boxpoints="outliers",
                                marker_color=PRIORITY_COLORS[level], showlegend=False))
    return figure if figure.data else _no_data(figure)


def queue_depth_figure(depth_frame: pd.DataFrame) -> go.Figure:
    """Pending jobs per level as stacked steps, with jobs in processing as a dashed step line.

    Depth is a count sampled now and then: each sample holds until the next
    (steps, ``line_shape="hv"``), never a straight line that invents a climb
    between sparse samples. Time ticks are whole seconds, the x axis spans at
    least DEPTH_MIN_SPAN (a lone sample is not a sub-millisecond axis), and the
    y axis starts at 0 and shows 0..1 while the queue is empty.
    """
    figure = _figure("queue-depth", "Queue depth", "time (UTC)", "jobs")
    if depth_frame.empty:
        return _no_data(figure)
    require_columns(depth_frame, (*PRIORITY_LEVELS, "processing"), "queue depth")
    for level in PRIORITY_LEVELS:
        figure.add_trace(go.Scatter(
            x=depth_frame.index, y=depth_frame[level], name=level, mode="lines",
            stackgroup="pending", line={"color": PRIORITY_COLORS[level], "width": 1, "shape": "hv"},
        ))
    figure.add_trace(go.Scatter(
        x=depth_frame.index, y=depth_frame["processing"], name="processing", mode="lines",
        line={"color": PROCESSING_COLOR, "width": 2, "dash": "dash", "shape": "hv"},
    ))
    first, last = depth_frame.index.min(), depth_frame.index.max()
    if last - first < DEPTH_MIN_SPAN:
        figure.update_xaxes(range=[last - DEPTH_MIN_SPAN, last])
    figure.update_xaxes(tickformat="%H:%M:%S")
    pending = depth_frame[list(PRIORITY_LEVELS)].sum(axis=1)
    highest = max(int(pending.max()), int(depth_frame["processing"].max()))
    if highest == 0:
        figure.update_yaxes(range=[0, 1], dtick=1)
    else:
        figure.update_yaxes(rangemode="tozero")
    return figure


def event_rate_figure(counts: pd.DataFrame, bin_seconds: float) -> go.Figure:
    """Lines of events per second, one per column of a counts-per-bin frame (columns: event names).

    For long ranges read from the monitor's per-minute rollups, which count
    named events (job_added also counts requeued and recovered jobs).
    """
    figure = _figure("event-rate", "Events per second (per-minute rollups)", "time (UTC)", "events per second")
    if counts.empty or not len(counts.columns) or not counts.to_numpy().any():
        return _no_data(figure)
    x = _plain_times(counts.index)
    figure.add_traces([
        go.Scatter(x=x, y=counts[name].to_numpy(dtype="float64") / bin_seconds, name=str(name), mode="lines",
                   line={"color": THROUGHPUT_COLORS.get(str(name).removeprefix("job_")), "shape": "hv"})
        for name in counts.columns
    ])
    return figure


def _plain_times(times: pd.Index | pd.Series) -> Any:
    """UTC times as naive datetime64 (the axes say UTC): plotly sends those as they are, where
    tz-aware ones cost a Python object per point."""
    index = pd.DatetimeIndex(times)
    return (index.tz_convert("UTC").tz_localize(None) if index.tz is not None else index).to_numpy()


def latency_trend_figure(trend: pd.DataFrame, kind: str = "wait") -> go.Figure:
    """p50 (solid) and p99 (dotted) lines per priority level over time from a latency trend frame.

    ``trend``: columns time, level, kind (wait/run), p50_s, p99_s (``history_view.latency_trend``).
    """
    if kind not in ("wait", "run"):
        raise InvalidInputError(f"kind must be 'wait' or 'run'; got {kind!r}")
    title, axis_label = _LATENCY_METRICS[f"{kind}_s"]
    figure = _figure(f"latency-trend-{kind}", f"{title} over time", "time (UTC)", axis_label)
    require_columns(trend, ("time", "level", "kind", "p50_s", "p99_s"), "latency trend")
    rows = trend[(trend["kind"] == kind).to_numpy(dtype=bool)]
    traces = []
    for level in PRIORITY_LEVELS:
        chosen = rows[(rows["level"] == level).to_numpy(dtype=bool)]
        if chosen.empty:
            continue
        x = _plain_times(chosen["time"])
        for stat, dash in (("p50_s", "solid"), ("p99_s", "dot")):
            traces.append(go.Scatter(
                x=x, y=chosen[stat].to_numpy(dtype="float64"), name=f"{level} {stat.removesuffix('_s')}",
                mode="lines", line={"color": PRIORITY_COLORS[level], "dash": dash},
            ))
    figure.add_traces(traces)
    return figure if figure.data else _no_data(figure)


def priority_distribution(stats: pd.DataFrame | Mapping[Any, Any]) -> go.Figure:
    """The old name of ``priority_distribution_figure``, kept for one release."""
    warnings.warn("plots.priority_distribution is now plots.priority_distribution_figure; the old name "
                  "goes in the next release", DeprecationWarning, stacklevel=2)
    return priority_distribution_figure(stats)
