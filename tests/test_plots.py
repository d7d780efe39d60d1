"""plots.py on hand-built frames: trace names, values, colours, empty frames, no secrets."""

from __future__ import annotations

import ast

import pandas as pd
import pytest

import botrix_toolkit.frames.analysis
import botrix_toolkit.frames.plots
from botrix_toolkit.core.errors import InvalidInputError
from botrix_toolkit.frames.analysis import latency, queue_depth, throughput
from botrix_toolkit.frames.plots import (
    NO_DATA_TEXT,
    PRIORITY_COLORS,
    latency_figure,
    priority_distribution_figure,
    queue_depth_figure,
    throughput_figure,
)

T0 = pd.Timestamp("2026-11-27 22:00:00", tz="UTC")
UTC_NS = "datetime64[ns, UTC]"
SECRET = "hunter2-password"


def make_events(rows: list[tuple]) -> pd.DataFrame:
    """Events frame from (seconds, event, job_id, status, priority); data carries a password."""
    received = pd.Series([T0 + pd.Timedelta(seconds=r[0]) for r in rows], dtype=UTC_NS)
    return pd.DataFrame({
        "received_at": received,
        "timestamp": received.dt.floor("1s"),
        "event": pd.Series([r[1] for r in rows], dtype="string"),
        "job_id": pd.Series([r[2] for r in rows], dtype="string"),
        "status": pd.Series([r[3] for r in rows], dtype="string"),
        "priority": pd.Series([r[4] for r in rows], dtype="Int64"),
        "data": pd.Series([{"job_id": r[2], "password": SECRET, "username": "bob"} for r in rows],
                          dtype=object),
    })


def life(job: str, added: float, started: float, ended: float, priority: int) -> list[tuple]:
    return [(added, "status_updated", job, "pending", None), (added, "job_added", job, "pending", priority),
            (started, "status_updated", job, "running", None),
            (ended, "status_updated", job, "completed", None), (ended, "job_completed", job, "completed", None)]


EVENTS_ROWS = life("a", 0, 1, 3, 2) + life("b", 0, 2, 4, 1) + life("c", 1, 1.5, 2, 0) + life("d", 2, 3, 5, 0)


def stats_frame(rows: list[tuple[int, int, int, int, int]]) -> pd.DataFrame:
    """Stats frame from (seconds, high, normal, low, processing)."""
    frame = pd.DataFrame([
        {"timestamp": T0 + pd.Timedelta(seconds=s), "queue_length": h + n + lo, "processing_count": p,
         "high_priority": h, "normal_priority": n, "low_priority": lo, "ttl_seconds": 3600}
        for s, h, n, lo, p in rows
    ])
    frame["timestamp"] = frame["timestamp"].astype(UTC_NS)
    return frame


def annotation_texts(figure) -> list[str]:
    return [annotation.text for annotation in figure.layout.annotations]


def test_priority_distribution_bars_equal_the_counts_with_fixed_colours() -> None:
    stats = {"queue_length": 10, "processing_count": 3, "high_priority": 4, "normal_priority": 5,
             "low_priority": 1, "ttl_seconds": 3600}
    figure = priority_distribution_figure(stats)
    assert [trace.name for trace in figure.data] == ["high", "normal", "low"]
    assert [list(trace.y) for trace in figure.data] == [[4], [5], [1]]
    assert [trace.marker.color for trace in figure.data] == [PRIORITY_COLORS[level]
                                                            for level in ("high", "normal", "low")]
    assert figure.layout.yaxis.title.text == "jobs"


def test_priority_distribution_from_a_stats_frame_draws_the_latest_row() -> None:
    figure = priority_distribution_figure(stats_frame([(0, 9, 9, 9, 0), (1, 2, 0, 7, 1)]))
    assert [list(trace.y) for trace in figure.data] == [[2], [0], [7]]


def test_priority_distribution_rejects_a_dict_without_levels() -> None:
    with pytest.raises(InvalidInputError, match="low_priority"):
        priority_distribution_figure({"high_priority": 1, "normal_priority": 2})


def test_throughput_figure_plots_jobs_per_second_for_each_series() -> None:
    table = throughput(make_events(EVENTS_ROWS), freq="2s")
    figure = throughput_figure(table)
    names = [trace.name for trace in figure.data]
    assert names == ["added", "started", "completed", "failed", "cancelled", "requeued", "recovered"]
    completed = next(trace for trace in figure.data if trace.name == "completed")
    # completions at 2, 3, 4, 5 s -> bins [2, 4) and [4, 6) hold 2 each -> 1 job/s.
    assert list(completed.y) == [0.0, 1.0, 1.0]
    assert figure.layout.yaxis.title.text == "jobs per second"
    assert figure.layout.uirevision


def test_throughput_figure_finds_the_bin_length_without_freq() -> None:
    table = throughput(make_events(EVENTS_ROWS), freq="2s")
    table.index = pd.DatetimeIndex(list(table.index), name="time")  # freq lost, as after a round trip
    assert table.index.freq is None
    completed = next(trace for trace in throughput_figure(table).data if trace.name == "completed")
    assert list(completed.y) == [0.0, 1.0, 1.0]


def test_latency_figure_has_one_box_per_priority_in_its_colour() -> None:
    figure = latency_figure(latency(make_events(EVENTS_ROWS)), metric="run_s")
    assert [trace.name for trace in figure.data] == ["high", "normal", "low"]
    assert [trace.marker.color for trace in figure.data] == [PRIORITY_COLORS[level]
                                                            for level in ("high", "normal", "low")]
    assert sorted(figure.data[2].y) == [0.5, 2.0]  # c ran 1.5 -> 2, d ran 3 -> 5
    assert "(s)" in figure.layout.yaxis.title.text


def test_latency_figure_rejects_an_unknown_metric() -> None:
    with pytest.raises(InvalidInputError, match="queue_s"):
        latency_figure(latency(make_events(EVENTS_ROWS)), metric="queue_s")


def test_queue_depth_figure_stacks_levels_and_draws_processing() -> None:
    depth = queue_depth(stats_frame([(0, 1, 2, 3, 4), (1, 0, 1, 1, 2)]))
    figure = queue_depth_figure(depth)
    assert [trace.name for trace in figure.data] == ["high", "normal", "low", "processing"]
    assert [trace.stackgroup for trace in figure.data[:3]] == ["pending"] * 3
    assert figure.data[3].stackgroup is None
    assert list(figure.data[1].y) == [2, 1]
    assert [trace.line.color for trace in figure.data[:3]] == [PRIORITY_COLORS[level]
                                                              for level in ("high", "normal", "low")]


def test_queue_depth_is_drawn_as_steps_with_whole_second_ticks() -> None:
    depth = queue_depth(stats_frame([(0, 4, 0, 0, 0), (18, 0, 0, 0, 0)]))
    figure = queue_depth_figure(depth)
    # a sample holds until the next: no straight climb drawn between sparse samples
    assert [trace.line.shape for trace in figure.data] == ["hv"] * 4
    assert figure.layout.xaxis.tickformat == "%H:%M:%S"
    assert figure.layout.yaxis.rangemode == "tozero"


def test_an_empty_queue_depth_has_a_zero_to_one_axis_over_a_minute() -> None:
    depth = queue_depth(stats_frame([(0, 0, 0, 0, 0)]))  # one sample, nothing queued
    figure = queue_depth_figure(depth)
    assert tuple(figure.layout.yaxis.range) == (0, 1)
    start, end = (pd.Timestamp(value) for value in figure.layout.xaxis.range)
    assert end - start == pd.Timedelta(seconds=60)
    assert figure.layout.xaxis.tickformat == "%H:%M:%S"


@pytest.mark.parametrize("draw", [
    lambda: priority_distribution_figure(stats_frame([(0, 0, 0, 0, 0)]).iloc[:0]),
    lambda: throughput_figure(throughput(make_events([]))),
    lambda: latency_figure(latency(make_events([]))),
    lambda: queue_depth_figure(queue_depth(stats_frame([(0, 0, 0, 0, 0)]).iloc[:0])),
])
def test_empty_frames_give_a_no_data_figure(draw) -> None:
    figure = draw()
    assert annotation_texts(figure) == [NO_DATA_TEXT]
    assert len(figure.data) == 0


def test_no_figure_contains_the_password_from_event_data() -> None:
    events = make_events(EVENTS_ROWS)
    assert SECRET in str(events["data"].tolist())
    figures = [
        throughput_figure(throughput(events)),
        latency_figure(latency(events), "wait_s"),
        latency_figure(latency(events), "run_s"),
    ]
    for figure in figures:
        text = figure.to_json()
        assert SECRET not in text
        assert "password" not in text.lower()
        assert figure.layout.uirevision
        assert figure.layout.title.text


def test_plots_and_analysis_import_neither_redis_nor_streamlit() -> None:
    for module in (botrix_toolkit.frames.analysis, botrix_toolkit.frames.plots):
        tree = ast.parse(open(module.__file__, encoding="utf-8").read())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not {name for name in imported if name.split(".")[0] in {"redis", "streamlit"}}
        assert imported  # the walk found the module's imports at all


def test_priority_distribution_of_an_empty_queue_says_so() -> None:
    figure = priority_distribution_figure({"high_priority": 0, "normal_priority": 0, "low_priority": 0})
    assert [a.text for a in figure.layout.annotations] == ["queue empty"]
    assert tuple(figure.layout.yaxis.range) == (0, 1)
    busy = priority_distribution_figure({"high_priority": 1, "normal_priority": 0, "low_priority": 0})
    assert not busy.layout.annotations


def test_the_old_name_of_the_priority_figure_warns_and_draws_the_same() -> None:
    from botrix_toolkit.frames.plots import priority_distribution

    stats = {"high_priority": 1, "normal_priority": 2, "low_priority": 3}
    with pytest.warns(DeprecationWarning, match="priority_distribution_figure"):
        old = priority_distribution(stats)
    assert old.to_dict() == priority_distribution_figure(stats).to_dict()
