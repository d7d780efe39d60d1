"""The dashboard's activity ranges (``--history`` / BOTRIX_HISTORY_DIR), run by Streamlit's AppTest.

The page runs against a real server with a history folder written by the
monitor's own writer code (tests/history_data.py) for the page's own queue.
"""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from botrix_toolkit.core.queue import QueueService
from botrix_toolkit.core.settings import HISTORY_DIR_ENV
from botrix_toolkit.frames import history_view
from botrix_toolkit.frames.dataset_layout import partition_dir
from tests.history_data import SECRET, History, write_history
from tests.test_dashboard import (
    assert_no_exception,
    chart_spec,
    everything_rendered,
    page_env,  # noqa: F401  (the fixture)
    run_page,
    texts,
)

RANGE_CHART = "Events per second (per-minute rollups)"


@pytest.fixture
def history(tmp_path: Path, key_prefix: str) -> History:
    """Three days of the page's queue, a job every 20 minutes, with a monitor still recording."""
    now = pd.Timestamp.now(tz="UTC")
    history_view.ROLLUP_FILES.clear()
    return write_history(tmp_path / "history", key_prefix, now - pd.Timedelta(days=3), 216,
                         pd.Timedelta(minutes=20), flush_every=200, covered_until=now)


def captions(at: AppTest) -> list[str]:
    return texts(at.caption)


def charted_count(at: AppTest, event: str, bin_seconds: float) -> int:
    """Events the range chart draws for ``event``: its rates times the bin length."""
    trace = next(t for t in chart_spec(at, RANGE_CHART)["data"] if t["name"] == event)
    values = trace["y"]
    if isinstance(values, dict):  # plotly sends numpy arrays as base64 typed arrays
        values = np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"])
    return round(float(np.sum(values)) * bin_seconds)


def test_the_page_draws_seven_days_from_the_history(monkeypatch: pytest.MonkeyPatch, page_env: None,  # noqa: F811
                                                    queue: QueueService, history: History) -> None:
    monkeypatch.setenv(HISTORY_DIR_ENV, str(history.folder))
    at = run_page()
    assert_no_exception(at)
    assert any("a monitor is recording it" in c for c in captions(at))
    assert at.radio(key="activity_range").value == "5 minutes"

    at.radio(key="activity_range").set_value("7 days").run()

    assert_no_exception(at)
    now = pd.Timestamp.now(tz="UTC")
    assert charted_count(at, "job_completed", 600) == history.count("job_completed", now - pd.Timedelta(days=7), now)
    assert charted_count(at, "job_added", 600) == 216
    assert any("per-minute rollups" in c and "bins of 10 min" in c for c in captions(at))
    assert chart_spec(at, "Wait in queue by priority over time")["data"]
    assert SECRET not in everything_rendered(at)


def test_a_custom_range_and_a_backwards_one(monkeypatch: pytest.MonkeyPatch, page_env: None,  # noqa: F811
                                            queue: QueueService, history: History) -> None:
    monkeypatch.setenv(HISTORY_DIR_ENV, str(history.folder))
    at = run_page()
    at.radio(key="activity_range").set_value(history_view.CUSTOM_RANGE).run()
    assert_no_exception(at)
    assert any("per-minute rollups" in c and "bins of 1 min" in c for c in captions(at))  # the last day

    start = pd.Timestamp(history.received_ns[0], unit="ns", tz="UTC").floor("min")
    at.date_input(key="range_from_day").set_value(start.date())
    at.time_input(key="range_from_time").set_value(start.time())
    end = start + pd.Timedelta(minutes=30)  # the end's own day: after 23:30 UTC it is the next one
    at.date_input(key="range_to_day").set_value(end.date())
    at.time_input(key="range_to_time").set_value(end.time())
    at.run()
    assert_no_exception(at)
    assert chart_spec(at, "Throughput")["data"]  # 30 minutes: raw events, drawn as the live chart is

    before = start - pd.Timedelta(minutes=1)
    at.date_input(key="range_to_day").set_value(before.date())
    at.time_input(key="range_to_time").set_value(before.time()).run()
    assert_no_exception(at)
    assert any("must end after it starts" in w for w in texts(at.warning))


def test_without_a_history_folder_the_page_says_so_and_draws_live_charts(
        monkeypatch: pytest.MonkeyPatch, page_env: None, queue: QueueService) -> None:  # noqa: F811
    monkeypatch.delenv(HISTORY_DIR_ENV, raising=False)
    queue.add_job({"id": "live-1"})
    at = run_page()
    assert_no_exception(at)
    lines = [c for c in captions(at) if "No history folder given" in c]
    assert len(lines) == 1
    assert not at.radio  # no ranges: the live window only, as before
    assert chart_spec(at, "Throughput") and chart_spec(at, "Wait in queue by priority")


def test_a_bad_folder_or_file_is_one_line_never_a_traceback(
        monkeypatch: pytest.MonkeyPatch, page_env: None, queue: QueueService,  # noqa: F811
        history: History, tmp_path: Path, key_prefix: str) -> None:
    monkeypatch.setenv(HISTORY_DIR_ENV, str(tmp_path / "nowhere"))
    at = run_page()
    assert_no_exception(at)
    assert [w for w in texts(at.warning) if "does not exist" in w]
    assert chart_spec(at, "Throughput")

    today = pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%d")
    day = partition_dir(history.folder, "rollup_counts", key_prefix, today, None)
    day.mkdir(parents=True, exist_ok=True)  # just after midnight UTC, today has no rollups yet
    (day / "part-00000000000000000-broken.parquet").write_bytes(b"not parquet")
    monkeypatch.setenv(HISTORY_DIR_ENV, str(history.folder))
    at = run_page()
    at.radio(key="activity_range").set_value("24 hours").run()
    assert_no_exception(at)
    errors = [e for e in texts(at.error) if "cannot read the history folder" in e]
    assert len(errors) == 1 and "\n" not in errors[0]
    assert chart_spec(at, "Throughput")  # the live charts instead
