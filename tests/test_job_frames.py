"""Frames of jobs (pending, processing, stats) on a real server, Go-written jobs included."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pandas.testing as pdt
import pytest

from botrix_toolkit.core.queue import QueueService
from botrix_toolkit.core.reconnect import ReconnectRetry
from botrix_toolkit.frames.event_frames import STATS_COLUMNS
from botrix_toolkit.frames.job_frames import PENDING_COLUMNS, PROCESSING_COLUMNS

FIXTURES = Path(__file__).resolve().parent.parent / "data" / "fixtures"


def go_add(q: QueueService, raw: bytes) -> str:
    """AddJob as the Go service writes it, with raw commands."""
    document = json.loads(raw)
    job_id = document["id"]
    q.redis.set(q.keys.data(job_id), raw, ex=3600)
    q.redis.set(q.keys.status(job_id), "pending", ex=3600)
    q.redis.zadd(q.keys.queue, {job_id: -document["priority"]})
    return job_id


def test_empty_queue_gives_empty_frame_with_every_column_and_dtype(queue: QueueService) -> None:
    frame = queue.pending_jobs_frame()
    assert list(frame.columns) == list(PENDING_COLUMNS)
    assert {name: str(dtype) for name, dtype in frame.dtypes.items()} == {
        name: str(pd.Series(dtype=dtype).dtype) for name, dtype in PENDING_COLUMNS.items()
    }
    assert frame.attrs == {"orphans": 0, "corrupt": 0, "not_pending": 0}


def test_pending_frame_columns_dtypes_and_dequeue_order(queue: QueueService) -> None:
    queue.add_jobs([
        {"id": "low-1", "priority": "low", "count": 3, "username": "ana", "test_mode": True},
        {"id": "high-1", "priority": "high", "count": 7, "username": "bo"},
        {"id": "normal-1", "priority": 1, "count": 1, "source": "api"},
    ])
    frame = queue.pending_jobs_frame()
    assert list(frame["id"]) == ["high-1", "normal-1", "low-1"]
    assert list(frame["rank"]) == [0, 1, 2]
    assert list(frame["priority"]) == [2, 1, 0]
    assert list(frame["priority_label"].astype(str)) == ["high", "normal", "low"]
    assert frame["priority_label"].cat.ordered and list(frame["priority_label"].cat.codes) == [2, 1, 0]
    assert list(frame["status"]) == ["pending"] * 3
    assert list(frame.columns[: len(PENDING_COLUMNS)]) == list(PENDING_COLUMNS)
    for name, dtype in PENDING_COLUMNS.items():
        assert str(frame[name].dtype) == str(pd.Series(dtype=dtype).dtype), name
    assert frame["created_at"].notna().all() and str(frame["created_at"].dt.tz) == "UTC"
    assert frame["started_at"].isna().all()
    assert list(frame["count"]) == [7, 1, 3]
    assert frame["test_mode"].tolist() == [False, False, True]
    # an extra field becomes a column of its own
    assert frame["source"].tolist()[1] == "api" and pd.isna(frame["source"].tolist()[0])


def test_go_written_jobs_zero_times_offsets_and_priority_seven(queue: QueueService) -> None:
    for name in ("go_zero_times.json", "go_offset_nanos.json", "go_priority7.json", "go_unknown_fields.json"):
        go_add(queue, (FIXTURES / name).read_bytes())
    frame = queue.pending_jobs_frame().set_index("id")
    zero = json.loads((FIXTURES / "go_zero_times.json").read_bytes())["id"]
    assert pd.isna(frame.loc[zero, "created_at"]) and pd.isna(frame.loc[zero, "updated_at"])
    offset = json.loads((FIXTURES / "go_offset_nanos.json").read_bytes())
    # 22:07:34.123456789+01:00 is 21:07:34.123456789 UTC, to the nanosecond
    assert frame.loc[offset["id"], "created_at"] == pd.Timestamp("2026-11-27T21:07:34.123456789Z")
    seven = json.loads((FIXTURES / "go_priority7.json").read_bytes())["id"]
    assert frame.loc[seven, "priority"] == 7
    assert frame.loc[seven, "priority_label"] == "high"
    assert frame.index[0] == seven  # score -7 is served first
    unknown = json.loads((FIXTURES / "go_unknown_fields.json").read_bytes())
    extra = [key for key in unknown if key not in PENDING_COLUMNS]
    assert extra and all(key in frame.columns for key in extra)


def test_password_and_configured_secrets_never_reach_a_cell(queue: QueueService) -> None:
    go_add(queue, (FIXTURES / "go_password.json").read_bytes())
    queue.add_job({"id": "t-1", "password": "hunter2", "api_token": "tok-123", "username": "x"})
    queue.add_job({"id": "t-2", "username": "no-secret"})
    frame = queue.pending_jobs_frame(secrets=("password", "api_token"))
    text = frame.to_csv() + frame.to_json(date_format="iso")
    go_password = json.loads((FIXTURES / "go_password.json").read_bytes())["password"]
    for secret in ("hunter2", "tok-123", go_password):
        assert secret not in text
    by_id = frame.set_index("id")
    assert by_id.loc["t-1", "password"] == "***" and by_id.loc["t-1", "api_token"] == "***"
    assert pd.isna(by_id.loc["t-2", "password"])


# The job of issue 14: secrets below the top level, in a list, in another case.
NESTED_SECRETS = {"id": "nested", "priority": 2, "password": "TOP", "username": "ana",
                  "meta": {"password": "NESTED", "creds": [{"password": "LIST"}], "Password": "CASE",
                           "api_key": "KEY", "auth": {"access_token": "TOKEN"}},
                  "client_secret": "CLIENT"}
NESTED_VALUES = ("TOP", "NESTED", "LIST", "CASE", "KEY", "TOKEN", "CLIENT")


def test_secrets_at_any_depth_never_reach_a_frame_a_repr_or_a_job_list(queue: QueueService) -> None:
    queue.add_job(NESTED_SECRETS)
    go_add(queue, json.dumps({**NESTED_SECRETS, "id": "go-nested", "priority": 1}).encode())
    frame = queue.pending_jobs_frame()
    shown = [frame.to_csv(), frame.to_json(date_format="iso"), repr(frame["meta"].tolist()),
             repr(queue.get_job("nested")), str(queue.get_job("go-nested")),
             repr(queue.get_pending_jobs()), repr([job.to_dict() for job in queue.get_pending_jobs()])]
    for text in shown:
        assert not any(value in text for value in NESTED_VALUES), text
    meta = frame.set_index("id").loc["nested", "meta"]
    assert meta["creds"] == [{"password": "***"}] and meta["auth"] == {"access_token": "***"}
    assert frame.set_index("id").loc["nested", "client_secret"] == "***"
    # the stored job keeps every value, for the Go service and the worker
    stored = json.loads(queue.redis.get(queue.keys.data("nested")))
    assert stored["meta"] == NESTED_SECRETS["meta"] and stored["client_secret"] == "CLIENT"
    assert queue.get_job("nested").extra["meta"]["creds"] == [{"password": "LIST"}]


def test_orphans_corrupt_and_not_pending_are_left_out_and_counted(queue: QueueService) -> None:
    queue.add_jobs([{"id": f"j{i}", "priority": 1} for i in range(6)])
    queue.redis.delete(queue.keys.data("j0"))  # orphan
    queue.redis.set(queue.keys.data("j1"), "not json")  # corrupt
    queue.redis.set(queue.keys.data("j2"), "[1, 2]")  # JSON, not an object
    queue.redis.set(queue.keys.status("j3"), "cancelled")  # no longer pending
    frame = queue.pending_jobs_frame()
    assert sorted(frame["id"]) == ["j4", "j5"]
    assert frame.attrs == {"orphans": 1, "corrupt": 2, "not_pending": 1}


def test_wrong_json_types_become_missing_values_not_errors(queue: QueueService) -> None:
    queue.add_job({"id": "ok", "priority": 1, "count": 5})
    queue.redis.set(queue.keys.data("ok"), json.dumps(
        {"id": "ok", "priority": 1, "count": "five", "test_mode": "yes", "created_at": "yesterday"}))
    frame = queue.pending_jobs_frame()
    row = frame.iloc[0]
    assert pd.isna(row["count"]) and pd.isna(row["test_mode"]) and pd.isna(row["created_at"])


def test_limit_reads_only_the_head_of_the_queue(queue: QueueService) -> None:
    queue.add_jobs([{"id": f"n{i:03d}", "priority": 1} for i in range(250)])
    queue.add_jobs([{"id": f"h{i:03d}", "priority": 2} for i in range(5)])
    frame = queue.pending_jobs_frame(limit=10)
    assert len(frame) == 10
    assert list(frame["id"][:5]) == [f"h{i:03d}" for i in range(5)]
    assert list(frame["rank"]) == list(range(10))


def test_large_queue_is_read_in_chunks_without_losing_rows(queue: QueueService) -> None:
    queue.add_jobs({"id": f"bulk-{i:06d}", "priority": i % 3, "count": i} for i in range(25_000))
    frame = queue.pending_jobs_frame()
    assert len(frame) == 25_000
    assert frame["id"].is_unique
    assert list(frame["rank"]) == list(range(25_000))
    assert frame["priority"].is_monotonic_decreasing


def test_processing_frame_shows_how_long_each_job_is_held(queue: QueueService) -> None:
    assert list(queue.processing_frame().columns) == list(PROCESSING_COLUMNS)
    queue.add_jobs([{"id": "a", "priority": 2, "username": "ana", "count": 3, "password": "pw"},
                    {"id": "b", "priority": 0}])
    taken = queue.dequeue_jobs(2)
    assert {job.id for job in taken} == {"a", "b"}
    # age a's lease by a minute, as a stalled worker would leave it
    leased_ms = queue.redis.zscore(queue.keys.leases, "a")
    queue.redis.zadd(queue.keys.leases, {"a": leased_ms - 60_000})
    frame = queue.processing_frame()
    assert list(frame.columns) == list(PROCESSING_COLUMNS)
    assert list(frame["id"]) == ["a", "b"]  # longest held first
    assert frame.loc[0, "held_s"] >= 60 and frame.loc[1, "held_s"] < 60
    assert frame.loc[0, "username"] == "ana" and frame.loc[0, "count"] == 3
    assert list(frame["status"]) == ["running", "running"]
    assert "pw" not in frame.to_csv()
    for name, dtype in PROCESSING_COLUMNS.items():
        assert str(frame[name].dtype) == str(pd.Series(dtype=dtype).dtype), name


def test_processing_frame_of_a_go_taken_job_has_no_lease(queue: QueueService) -> None:
    queue.add_job({"id": "go-taken", "priority": 1})
    queue.redis.zpopmin(queue.keys.queue)
    queue.redis.sadd(queue.keys.processing, "go-taken")
    frame = queue.processing_frame()
    assert frame.loc[0, "id"] == "go-taken"
    assert pd.isna(frame.loc[0, "leased_at"]) and pd.isna(frame.loc[0, "held_s"])


def test_stats_frame_is_one_row_with_timestamp_and_concatenates(queue: QueueService) -> None:
    queue.add_jobs([{"priority": p} for p in (0, 1, 1, 2, 2, 2)])
    first = queue.stats_frame()
    queue.dequeue_job()
    second = queue.stats_frame()
    series = pd.concat([first, second], ignore_index=True)
    assert list(series.columns) == list(STATS_COLUMNS)
    expected = pd.DataFrame({
        "queue_length": [6, 5], "processing_count": [0, 1], "high_priority": [3, 2],
        "normal_priority": [2, 2], "low_priority": [1, 1], "ttl_seconds": [3600, 3600],
    }).astype("int64")
    pdt.assert_frame_equal(series.drop(columns="timestamp"), expected)
    assert series["timestamp"].is_monotonic_increasing
    assert str(series["timestamp"].dtype) == "datetime64[ns, UTC]"


@pytest.mark.parametrize("method", ["pending_jobs_frame", "processing_frame", "stats_frame"])
def test_frames_of_an_unreachable_server_raise_a_connection_error_naming_it(method: str) -> None:
    from botrix_toolkit.core.errors import ServerConnectionError
    from botrix_toolkit.server.ports import free_port

    port = free_port()
    # A short reconnect window: what is checked here is the message, the window has its own tests (test_reconnect.py)
    q = QueueService.from_url(f"redis://:topsecret@127.0.0.1:{port}/0", socket_timeout=1,
                              socket_connect_timeout=1, retry=ReconnectRetry(window_s=0.2))
    with pytest.raises(ServerConnectionError) as caught:
        getattr(q, method)()
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert "topsecret" not in str(caught.value)
