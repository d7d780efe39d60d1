"""analysis.py on hand-built events and stats frames with known answers (no server needed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from botrix_toolkit.core.errors import InvalidInputError
from botrix_toolkit.frames.analysis import (
    LATENCY_DTYPES,
    PRIORITY_LABEL_DTYPE,
    THROUGHPUT_COLUMNS,
    busiest,
    failure_rate,
    latency,
    priority_label,
    queue_depth,
    summary,
    throughput,
)

T0 = pd.Timestamp("2026-11-27 22:00:00", tz="UTC")
UTC_NS = "datetime64[ns, UTC]"


def make_events(rows: list[tuple], with_received_at: bool = True) -> pd.DataFrame:
    """Events frame from (seconds after T0, event, job_id, status, priority) tuples.

    received_at is T0 + seconds (sub-second allowed); timestamp is that, floored to
    whole seconds as in the Go messages. status/priority may be None.
    """
    received = [T0 + pd.Timedelta(seconds=r[0]) for r in rows]
    frame = pd.DataFrame({
        "received_at": pd.Series(received, dtype=UTC_NS),
        "timestamp": pd.Series(received, dtype=UTC_NS).dt.floor("1s"),
        "event": pd.Series([r[1] for r in rows], dtype="string"),
        "job_id": pd.Series([r[2] for r in rows], dtype="string"),
        "status": pd.Series([r[3] for r in rows], dtype="string"),
        "priority": pd.Series([r[4] for r in rows], dtype="Int64"),
        "data": pd.Series([{"job_id": r[2], "status": r[3]} for r in rows], dtype=object),
    })
    return frame if with_received_at else frame.drop(columns="received_at")


def go_add(t: float, job: str, priority: int = 1) -> list[tuple]:
    return [(t, "status_updated", job, "pending", None), (t, "job_added", job, "pending", priority)]


def go_start(t: float, job: str) -> list[tuple]:
    return [(t, "status_updated", job, "running", None)]


def go_complete(t: float, job: str) -> list[tuple]:
    return [(t, "status_updated", job, "completed", None), (t, "job_completed", job, "completed", None)]


def go_fail(t: float, job: str) -> list[tuple]:
    return [(t, "status_updated", job, "failed", None), (t, "job_failed", job, "failed", None)]


def go_fail_requeue(t: float, job: str, new_priority: int) -> list[tuple]:
    return [(t, "status_updated", job, "failed", None), *go_add(t, job, new_priority)]


def go_cancel(t: float, job: str) -> list[tuple]:
    return [(t, "status_updated", job, "cancelled", None), (t, "job_cancelled", job, "cancelled", None)]


def recover(t: float, job: str, priority: int) -> list[tuple]:
    return [(t, "job_recovered", job, "pending", priority), *go_add(t, job, priority)]


def totals(events: pd.DataFrame) -> dict[str, int]:
    return {name: int(value) for name, value in throughput(events).sum().items()}


def expected_totals(**counts: int) -> dict[str, int]:
    return {name: counts.get(name, 0) for name in THROUGHPUT_COLUMNS}


# --- throughput ---------------------------------------------------------------------------


def test_full_go_life_counts_once_per_category_in_its_bin() -> None:
    events = make_events(go_add(0.2, "a") + go_start(1.4, "a") + go_complete(3.9, "a"))
    assert len(events) == 5

    result = throughput(events)

    index = pd.date_range(T0, periods=4, freq="1s", name="time").as_unit("ns")
    expected = pd.DataFrame(0, index=index, columns=list(THROUGHPUT_COLUMNS), dtype="int64")
    expected.loc[T0, "added"] = 1
    expected.loc[T0 + pd.Timedelta(seconds=1), "started"] = 1
    expected.loc[T0 + pd.Timedelta(seconds=3), "completed"] = 1
    pdt.assert_frame_equal(result, expected, check_freq=False)
    assert str(result.index.dtype) == UTC_NS


def test_requeued_failure_counts_as_requeued_not_failed_nor_added() -> None:
    events = make_events(go_add(0, "a", 1) + go_start(1, "a") + go_fail_requeue(2, "a", 0)
                         + go_start(3, "a") + go_complete(4, "a"))
    assert totals(events) == expected_totals(added=1, started=2, requeued=1, completed=1)


def test_job_failed_without_requeue_counts_failed_once() -> None:
    events = make_events(go_add(0, "a") + go_start(1, "a") + go_fail(2, "a"))
    assert totals(events) == expected_totals(added=1, started=1, failed=1)


def test_failed_by_status_update_alone_counts_failed() -> None:
    events = make_events(go_add(0, "a") + [(1, "status_updated", "a", "failed", None)])
    assert totals(events) == expected_totals(added=1, failed=1)


def test_recovered_job_counts_recovered_not_added() -> None:
    events = make_events(go_add(0, "a", 2) + go_start(1, "a") + recover(9, "a", 2)
                         + go_start(10, "a") + go_complete(11, "a"))
    assert totals(events) == expected_totals(added=1, started=2, recovered=1, completed=1)


def test_cancelled_pending_job_counts_cancelled_once() -> None:
    events = make_events(go_add(0, "a") + go_cancel(1, "a"))
    assert totals(events) == expected_totals(added=1, cancelled=1)


def test_completion_without_status_update_or_without_job_completed_counts_once() -> None:
    only_named = [(2, "job_completed", "a", "completed", None)]
    only_status = [(2, "status_updated", "b", "completed", None)]
    events = make_events(go_add(0, "a") + go_start(1, "a") + only_named
                         + go_add(0, "b") + go_start(1, "b") + only_status)
    assert totals(events) == expected_totals(added=2, started=2, completed=2)


def test_repeated_status_update_is_not_a_second_transition() -> None:
    events = make_events(go_add(0, "a") + go_start(1, "a") + go_complete(2, "a")
                         + [(3, "status_updated", "a", "completed", None)])
    assert totals(events)["completed"] == 1


def test_reused_id_after_completion_is_added_again() -> None:
    events = make_events(go_add(0, "a") + go_start(1, "a") + go_complete(2, "a") + go_add(5, "a"))
    assert totals(events) == expected_totals(added=2, started=1, completed=1)


def test_interleaved_jobs_are_followed_separately() -> None:
    rows = (go_add(0, "a") + go_add(0, "b") + go_start(1, "b") + go_start(1, "a")
            + [go_fail_requeue(2, "a", 0)[0], go_complete(2, "b")[0]]
            + go_fail_requeue(2, "a", 0)[1:] + go_complete(2, "b")[1:] + go_cancel(3, "a"))
    assert totals(make_events(rows)) == expected_totals(
        added=2, started=2, requeued=1, completed=1, cancelled=1)


def test_bins_use_received_at_below_a_second_and_fill_gaps_with_zeros() -> None:
    events = make_events(go_add(0.1, "a") + go_add(0.6, "b") + go_add(2.2, "c"))
    result = throughput(events, freq="500ms")
    assert result.index[0] == T0
    assert result["added"].tolist() == [1, 1, 0, 0, 1]


def test_bins_fall_back_to_timestamp_without_received_at() -> None:
    events = make_events(go_add(0.1, "a") + go_add(0.6, "b") + go_add(2.2, "c"), with_received_at=False)
    result = throughput(events, freq="1s")
    assert result["added"].tolist() == [2, 0, 1]


def test_throughput_of_empty_frame_is_empty_with_the_columns() -> None:
    result = throughput(make_events([]))
    assert result.empty
    assert list(result.columns) == list(THROUGHPUT_COLUMNS)
    assert all(str(dtype) == "int64" for dtype in result.dtypes)
    assert isinstance(result.index, pd.DatetimeIndex) and str(result.index.dtype) == UTC_NS


@pytest.mark.parametrize("column", ["event", "job_id", "status"])
def test_throughput_names_a_missing_column(column: str) -> None:
    with pytest.raises(InvalidInputError, match=column):
        throughput(make_events(go_add(0, "a")).drop(columns=column))


def test_throughput_without_any_time_column_names_it() -> None:
    with pytest.raises(InvalidInputError, match="timestamp"):
        throughput(make_events(go_add(0, "a")).drop(columns=["received_at", "timestamp"]))


def test_busiest_returns_the_bins_with_most_completions() -> None:
    events = make_events(go_add(0, "a") + go_add(0, "b") + go_add(0, "c") + go_complete(1, "a")
                         + go_complete(3, "b") + go_complete(3, "c"))
    top = busiest(throughput(events), n=1)
    assert top.index.tolist() == [T0 + pd.Timedelta(seconds=3)]
    assert top["completed"].tolist() == [2]


# --- latency ------------------------------------------------------------------------------


def test_latency_exact_seconds_for_two_attempts_and_a_running_job() -> None:
    rows = (go_add(0.0, "a", 1) + go_start(1.5, "a") + go_fail_requeue(4.0, "a", 0)
            + go_start(4.25, "a") + go_complete(6.0, "a")
            + go_add(5.0, "b", 7) + go_start(5.5, "b"))
    result = latency(make_events(rows))

    at = lambda s: T0 + pd.Timedelta(seconds=s)  # noqa: E731
    expected = pd.DataFrame({
        "job_id": ["a", "a", "b"],
        "attempt": [1, 2, 1],
        "priority": [1, 0, 7],
        "priority_label": ["normal", "low", "high"],
        "added_at": [at(0.0), at(4.0), at(5.0)],
        "started_at": [at(1.5), at(4.25), at(5.5)],
        "ended_at": [at(4.0), at(6.0), pd.NaT],
        "wait_s": [1.5, 0.25, 0.5],
        "run_s": [2.5, 1.75, np.nan],
        "outcome": ["requeued", "completed", pd.NA],
    }).astype(LATENCY_DTYPES)
    pdt.assert_frame_equal(result, expected)


def test_latency_outcomes_for_failed_cancelled_recovered() -> None:
    rows = (go_add(0, "f") + go_start(1, "f") + go_fail(3, "f")
            + go_add(0, "c") + go_cancel(2, "c")
            + go_add(1, "r", 2) + go_start(2, "r") + recover(10, "r", 2))
    result = latency(make_events(rows)).set_index(["job_id", "attempt"])
    assert result["outcome"].fillna("<NA>").to_dict() == {
        ("f", 1): "failed", ("c", 1): "cancelled", ("r", 1): "recovered", ("r", 2): "<NA>"}
    assert result.loc[("c", 1), "started_at"] is pd.NaT
    assert np.isnan(result.loc[("c", 1), "wait_s"])
    assert result.loc[("r", 1), "run_s"] == 8.0
    assert result.loc[("f", 1), "run_s"] == 2.0


def test_latency_ignores_a_job_whose_add_was_not_captured() -> None:
    rows = go_start(0, "early") + go_complete(1, "early") + go_add(0, "a")
    assert latency(make_events(rows))["job_id"].tolist() == ["a"]


def test_latency_of_empty_frame_has_the_dtypes() -> None:
    result = latency(make_events([]))
    assert result.empty
    assert result.dtypes.to_dict() == pd.DataFrame(columns=list(LATENCY_DTYPES)).astype(
        LATENCY_DTYPES).dtypes.to_dict()


def test_latency_names_a_missing_priority_column() -> None:
    with pytest.raises(InvalidInputError, match="priority"):
        latency(make_events(go_add(0, "a")).drop(columns="priority"))


def test_priority_label_clamps_and_orders() -> None:
    labels = priority_label(pd.Series([5, 2, 1, 0, -3, None], dtype="Int64"))
    assert labels.astype(object).tolist()[:5] == ["high", "high", "normal", "low", "low"]
    assert labels.isna().tolist()[5]
    assert labels.dtype == PRIORITY_LABEL_DTYPE
    assert (labels.iloc[:5] > "normal").tolist() == [True, True, False, False, False]


# --- summary and failure_rate -------------------------------------------------------------


def latency_by_hand(values: dict[str, list[float]]) -> pd.DataFrame:
    labels = [label for label, waits in values.items() for _ in waits]
    waits = [w for ws in values.values() for w in ws]
    return pd.DataFrame({
        "priority_label": pd.Series(labels, dtype=PRIORITY_LABEL_DTYPE),
        "wait_s": waits,
        "run_s": [2 * w for w in waits],
        "outcome": pd.Series(["completed"] * len(waits), dtype="string"),
    })


def test_summary_percentiles_on_known_values() -> None:
    frame = latency_by_hand({"high": [1, 2, 3, 4, 5], "low": [10.0]})
    frame.loc[len(frame)] = [pd.Categorical(["low"], dtype=PRIORITY_LABEL_DTYPE)[0], np.nan,
                             np.nan, "completed"]

    result = summary(frame)

    index = pd.Index(["high", "normal", "low", "all"], name="priority_label")
    wait = {
        "wait_count": [5, 0, 1, 6],
        "wait_mean_s": [3.0, np.nan, 10.0, 25 / 6],
        "wait_p50_s": [3.0, np.nan, 10.0, 3.5],
        "wait_p90_s": [4.6, np.nan, 10.0, 7.5],
        "wait_p99_s": [4.96, np.nan, 10.0, 9.75],
        "wait_max_s": [5.0, np.nan, 10.0, 10.0],
    }
    expected = pd.DataFrame(wait, index=index)
    for column, values in wait.items():
        run = column.replace("wait", "run")
        expected[run] = values if column == "wait_count" else [2 * v for v in values]
    pdt.assert_frame_equal(result, expected)


def test_summary_of_empty_latency_frame_has_all_rows_and_zero_counts() -> None:
    result = summary(latency(make_events([])))
    assert result.index.tolist() == ["high", "normal", "low", "all"]
    assert result["wait_count"].tolist() == [0, 0, 0, 0]
    assert result["run_count"].dtype == "int64"


def test_failure_rate_counts_outcomes_by_priority() -> None:
    rows = (go_add(0, "h1", 2) + go_start(1, "h1") + go_fail(2, "h1")
            + go_add(0, "h2", 2) + go_start(1, "h2") + go_complete(2, "h2")
            + go_add(0, "n1", 1) + go_start(1, "n1") + go_fail_requeue(2, "n1", 0))
    result = failure_rate(latency(make_events(rows)))
    assert result.loc["high", ["attempts", "completed", "failed"]].tolist() == [2, 1, 1]
    assert result.loc["high", "failure_rate"] == 0.5
    assert result.loc["normal", "requeued"] == 1
    assert result.loc["low", "unfinished"] == 1
    assert result.loc["all", "attempts"] == 4
    assert np.isnan(result.loc["low", "failure_rate"])


# --- queue_depth --------------------------------------------------------------------------


def stats_row(seconds: int, high: int, normal: int, low: int, processing: int) -> dict:
    return {"timestamp": T0 + pd.Timedelta(seconds=seconds), "queue_length": high + normal + low,
            "processing_count": processing, "high_priority": high, "normal_priority": normal,
            "low_priority": low, "ttl_seconds": 3600}


def test_queue_depth_sorts_and_drops_repeated_snapshots() -> None:
    stats = pd.DataFrame([stats_row(2, 1, 1, 1, 4), stats_row(0, 5, 0, 2, 1), stats_row(2, 1, 1, 1, 4)])
    stats["timestamp"] = stats["timestamp"].astype(UTC_NS)

    result = queue_depth(stats)

    expected = pd.DataFrame(
        {"high": [5, 1], "normal": [0, 1], "low": [2, 1], "processing": [1, 4], "total": [8, 7]},
        index=pd.DatetimeIndex([T0, T0 + pd.Timedelta(seconds=2)], name="timestamp").astype(UTC_NS),
        dtype="int64",
    )
    pdt.assert_frame_equal(result, expected)


def test_queue_depth_of_empty_stats_and_missing_column() -> None:
    empty = pd.DataFrame(columns=list(stats_row(0, 0, 0, 0, 0)))
    result = queue_depth(empty)
    assert result.empty and list(result.columns) == ["high", "normal", "low", "processing", "total"]
    with pytest.raises(InvalidInputError, match="processing_count"):
        queue_depth(pd.DataFrame([stats_row(0, 1, 1, 1, 1)]).drop(columns="processing_count"))
