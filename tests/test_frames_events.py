"""event_frames.py, events and stats part: frames built from hand-made message bytes."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from botrix_toolkit.core.json_depth import MAX_JSON_DEPTH
from botrix_toolkit.frames.event_frames import (
    EVENT_COLUMNS,
    MALFORMED_COLUMNS,
    STATS_COLUMNS,
    empty_frame,
    events_frame,
    parse_event_messages,
    stats_frame_from,
)

T0_NS = 1_764_281_254_500_000_000


def _msg(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def _utc(values: list[object]) -> pd.Series:
    return pd.Series(pd.to_datetime(values, utc=True)).astype("datetime64[ns, UTC]")


def test_events_frame_has_exact_columns_dtypes_and_values() -> None:
    added = {"job_id": "a", "status": "pending", "priority": 2}
    raw = [
        _msg(event="job_added", job_id="a", timestamp=1764281254, data=added),
        _msg(event="status_updated", job_id="a", timestamp=1764281255,
             data={"job_id": "a", "status": "running"}),
        _msg(event="job_orphan_removed", job_id="b"),  # no timestamp, no data
    ]
    frame = events_frame(raw, [T0_NS, T0_NS + 1, T0_NS + 2])
    expected = pd.DataFrame(
        {
            "received_at": pd.to_datetime(
                np.array([T0_NS, T0_NS + 1, T0_NS + 2]).view("M8[ns]"), utc=True
            ),
            "timestamp": pd.to_datetime(
                ["2025-11-27T22:07:34Z", "2025-11-27T22:07:35Z", None], utc=True
            ).as_unit("ns"),
            "event": pd.array(["job_added", "status_updated", "job_orphan_removed"], dtype="string"),
            "job_id": pd.array(["a", "a", "b"], dtype="string"),
            "status": pd.array(["pending", "running", None], dtype="string"),
            "priority": pd.array([2, None, None], dtype="Int64"),
            "data": pd.Series([added, {"job_id": "a", "status": "running"}, {}], dtype=object),
        }
    )
    pdt.assert_frame_equal(frame, expected)
    assert dict(frame.dtypes.astype(str)) == {k: str(pd.Series(dtype=v).dtype) for k, v in EVENT_COLUMNS.items()}
    assert isinstance(frame.index, pd.RangeIndex)


def test_empty_input_gives_empty_frames_with_the_right_dtypes() -> None:
    pdt.assert_frame_equal(events_frame([], []), empty_frame(EVENT_COLUMNS))
    parsed = parse_event_messages([], [])
    pdt.assert_frame_equal(parsed.malformed_frame(), empty_frame(MALFORMED_COLUMNS))
    assert list(empty_frame(EVENT_COLUMNS).columns) == list(EVENT_COLUMNS)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"not json", "not JSON"),
        (b"[1,2]", "not a JSON object"),
        (b'{"event":1}', "missing or non-string event"),
        (b'{"event":"job_added"}', "missing or non-string job_id"),
        (b'{"event":"job_added","job_id":""}', "missing or non-string job_id"),
        (b'{"event":"job_added","job_id":"x","data":[1]}', "data is not a JSON object"),
    ],
)
def test_malformed_messages_are_kept_apart_with_a_reason(raw: bytes, reason: str) -> None:
    good = _msg(event="job_added", job_id="ok", timestamp=1, data={})
    parsed = parse_event_messages([good, raw, good], [1, 2, 3])
    frame = parsed.frame()
    bad = parsed.malformed_frame()
    assert list(frame["job_id"]) == ["ok", "ok"]
    assert list(bad["reason"]) == [reason]
    assert bad["raw"].iloc[0] == raw.decode("utf-8", errors="replace")
    assert bad["received_at"].iloc[0] == pd.Timestamp(2, unit="ns", tz="UTC")
    assert dict(bad.dtypes.astype(str)) == dict(empty_frame(MALFORMED_COLUMNS).dtypes.astype(str))


def test_passwords_are_redacted_at_any_depth_and_in_malformed_text() -> None:
    nested = {"job_id": "a", "password": "hunter2",
              "job": {"Password": "hunter3", "list": [{"PASSWORD": "hunter4"}]}}
    escaped = b'{"event":"e","job_id":"b","data":{"pass\\u0077ord":"hunter5"}}'
    raw = [
        _msg(event="job_added", job_id="a", data=nested),
        escaped,
        b'["password", {"password": "hunter6"}]',
        b'password=hunter7 not json',
    ]
    parsed = parse_event_messages(raw, 0)
    frame, bad = parsed.frame(), parsed.malformed_frame()
    assert frame["data"].iloc[0] == {"job_id": "a", "password": "***",
                                     "job": {"Password": "***", "list": [{"PASSWORD": "***"}]}}
    assert frame["data"].iloc[1] == {"password": "***"}
    text = frame.to_string() + bad.to_string() + repr(frame["data"].tolist()) + repr(bad["raw"].tolist())
    for secret in ("hunter2", "hunter3", "hunter4", "hunter5", "hunter6", "hunter7"):
        assert secret not in text
    assert len(bad) == 2


def test_a_message_nested_deeper_than_the_limit_is_malformed_and_its_secret_hidden() -> None:
    deep = (b'{"event":"job_added","job_id":"p","data":{"password":"hunter8","x":'
            + b"[" * 100_000 + b"]" * 100_000 + b"}}")
    just_over = _msg(event="job_added", job_id="q",
                     data={"x": json.loads("[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1))})
    at_limit = _msg(event="job_added", job_id="r",
                    data={"x": json.loads("[" * (MAX_JSON_DEPTH - 2) + "]" * (MAX_JSON_DEPTH - 2))})
    parsed = parse_event_messages([deep, just_over, at_limit], 0)
    assert list(parsed.frame()["job_id"]) == ["r"]
    bad = parsed.malformed_frame()
    assert list(bad["reason"]) == [f"message nests deeper than {MAX_JSON_DEPTH} levels of JSON "
                                   "objects and arrays"] * 2
    assert "hunter8" not in bad["raw"].iloc[0]


def test_timestamps_out_of_range_or_not_numbers_are_nat() -> None:
    raw = [_msg(event="e", job_id="a", timestamp=10**20), _msg(event="e", job_id="a", timestamp="x"),
           _msg(event="e", job_id="a", timestamp=True), _msg(event="e", job_id="a", timestamp=1.5)]
    frame = events_frame(raw, 0)
    assert frame["timestamp"].isna().tolist() == [True, True, True, False]
    assert frame["timestamp"].iloc[3] == pd.Timestamp("1970-01-01T00:00:01.5", tz="UTC")


def test_priority_that_is_not_an_int_is_na() -> None:
    raw = [_msg(event="job_added", job_id="a", data={"priority": p}) for p in (0, "high", 1.0, True, 2**70)]
    assert events_frame(raw, 0)["priority"].tolist() == [0, pd.NA, pd.NA, pd.NA, pd.NA]


def test_received_at_must_match_the_messages() -> None:
    with pytest.raises(ValueError, match="one per message"):
        events_frame([b"{}", b"{}"], [1])


def test_stats_frame_from_a_stats_dict() -> None:
    stats = {"queue_length": 5, "processing_count": 2, "high_priority": 1, "normal_priority": 3,
             "low_priority": 1, "ttl_seconds": 3600}
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    frame = stats_frame_from(stats, when)
    expected = pd.DataFrame({"timestamp": _utc([when])} | {k: np.array([v], dtype="int64") for k, v in stats.items()})
    pdt.assert_frame_equal(frame, expected)
    assert dict(frame.dtypes.astype(str)) == dict(empty_frame(STATS_COLUMNS).dtypes.astype(str))


def test_stats_frame_names_a_missing_stat() -> None:
    with pytest.raises(KeyError, match="ttl_seconds"):
        stats_frame_from({"queue_length": 1, "processing_count": 0, "high_priority": 0,
                          "normal_priority": 0, "low_priority": 0}, datetime.now(UTC))
