"""The fast (C++) and exact (value by value) readings of pending jobs give the same frame.

Every test writes stored values with raw commands, as the Go service or
another client would, and compares ``pending_jobs_frame()`` with
``pending_jobs_frame(exact=True)`` value for value, plus what each case must
read as.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pandas.testing as pdt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botrix_toolkit.core.cleanup import delete_keys_under
from botrix_toolkit.core.queue import QueueService
from botrix_toolkit.frames.job_frames import pending_jobs_frame

FIXTURES = Path(__file__).resolve().parent.parent / "data" / "fixtures"
PLAIN = {"created_at": "2026-11-27T21:07:34.5Z", "updated_at": "2026-11-27T21:07:34.5Z", "deleted_at": None,
         "count": 1, "status": "pending", "progress": 0, "successful": 0, "failed": 0, "test_mode": False,
         "priority": 1}


def store(q: QueueService, raw: bytes | str, job_id: str, priority: int = 1) -> None:
    """A value written as Go's AddJob writes one: data, status, queue member."""
    q.redis.set(q.keys.data(job_id), raw)
    q.redis.set(q.keys.status(job_id), "pending")
    q.redis.zadd(q.keys.queue, {job_id: -priority})


def both_frames(q: QueueService, **kwargs: Any) -> pd.DataFrame:
    fast, exact = pending_jobs_frame(q, **kwargs), pending_jobs_frame(q, exact=True, **kwargs)
    pdt.assert_frame_equal(fast, exact)
    assert fast.attrs == exact.attrs
    return fast


def plain_jobs(q: QueueService, count: int, start: int = 0) -> None:
    """Flat jobs the fast path takes whole, so each chunk mixes both paths."""
    for i in range(start, start + count):
        store(q, json.dumps({"id": f"plain-{i:04d}", **PLAIN, "username": f"u{i}"}), f"plain-{i:04d}")


def test_go_written_fixtures_read_alike(queue: QueueService) -> None:
    for path in sorted(FIXTURES.glob("*.json")):
        raw = path.read_bytes()
        document = json.loads(raw)
        store(queue, raw, document["id"], document["priority"])
    plain_jobs(queue, 30)
    frame = both_frames(queue).set_index("id")
    assert frame.loc["go-offset-1", "created_at"] == pd.Timestamp("2026-11-27T21:07:34.123456789Z")
    assert frame.loc["go-finished-1" if "go-finished-1" in frame.index else "go-retry-1", "error_msg"] == (
        "proxy timeout <5s> & retry")
    assert frame.loc["go-secret-1", "password"] == "***"
    assert frame.loc["go-extra-1", "tags"] == ["a", "b"] and frame.loc["go-extra-1", "big"] == 12345678901234
    assert frame.loc["go-extra-1", "meta"] == {"retries": 3, "ratio": 0.25, "nested": {"k": None}, "ok": True}
    assert pd.isna(frame.loc["go-zero-1", "created_at"])


def test_odd_times_are_read_as_go_reads_them(queue: QueueService) -> None:
    times = {
        "nine-digits": ("2026-11-27T22:07:34.123456789+01:00", pd.Timestamp("2026-11-27T21:07:34.123456789Z")),
        "eleven-digits": ("2026-11-27T21:07:34.12345678912Z", pd.Timestamp("2026-11-27T21:07:34.123456789Z")),
        "no-fraction": ("2026-11-27T21:07:34-05:00", pd.Timestamp("2026-11-28T02:07:34Z")),
        "zero": ("0001-01-01T00:00:00Z", pd.NaT),
        "date-only": ("2026-11-27", pd.NaT),
        "space": ("2026-11-27 21:07:34Z", pd.NaT),
        "no-zone": ("2026-11-27T21:07:34", pd.NaT),
        "lower-case": ("2026-11-27t21:07:34z", pd.NaT),
        "feb-30": ("2026-02-30T00:00:00Z", pd.NaT),
        "hour-24": ("2026-11-27T24:00:00Z", pd.NaT),
        "offset-24": ("2026-11-27T21:07:34+24:00", pd.NaT),
        "year-9999": ("9999-01-01T00:00:00Z", pd.NaT),
        "empty-fraction": ("2026-11-27T21:07:34.Z", pd.NaT),
        "number": (1764281254, pd.NaT),
        "null": (None, pd.NaT),
    }
    for name, (text, _) in times.items():
        store(queue, json.dumps({"id": name, **PLAIN, "created_at": text, "started_at": text}), name)
    plain_jobs(queue, 20)
    frame = both_frames(queue).set_index("id")
    for name, (_, expected) in times.items():
        for column in ("created_at", "started_at"):
            got = frame.loc[name, column]
            assert (pd.isna(got) and pd.isna(expected)) or got == expected, (name, column, got)


def test_unknown_fields_keep_their_json_values(queue: QueueService) -> None:
    extras = [
        {"source": "api", "n": 1, "flag": True},
        {"source": "cli", "n": 2, "ratio": 1.0},
        {"ratio": 1, "huge": 2**70, "nothing": None},
        {"Count": 5, "rank": "mine", "priority_label": 9, "tags": ["x"]},
    ]
    for i, extra in enumerate(extras):
        store(queue, json.dumps({"id": f"x{i}", **PLAIN, **extra}), f"x{i}")
    plain_jobs(queue, 20)
    frame = both_frames(queue).set_index("id")
    ratios = frame["ratio"]
    assert type(ratios["x1"]) is float and type(ratios["x2"]) is int  # 1.0 stays a float, 1 an int
    assert frame.loc["x2", "huge"] == 2**70 and frame.loc["x2", "nothing"] is None
    assert frame.loc["x0", "source"] == "api" and frame.loc["x0", "flag"] is True and frame.loc["x0", "n"] == 1
    assert frame.loc["x3", "Count"] == 5 and frame.loc["x3", "count"] == 1  # Go fields match exact names only here
    assert frame.loc["x3", "json.rank"] == "mine" and frame.loc["x3", "json.priority_label"] == 9
    assert frame["source"].dtype == object and frame.loc["plain-0001", "source"] is None


def test_secrets_hidden_at_any_depth_and_case(queue: QueueService) -> None:
    store(queue, json.dumps({"id": "s1", **PLAIN, "password": "TOP", "Password": "CASE",
                             "meta": {"password": "NESTED", "creds": [{"password": "LIST"}]}}), "s1")
    store(queue, json.dumps({"id": "s2", **PLAIN, "password": "", "api_token": "tok-1"}), "s2")
    store(queue, json.dumps({"id": "s3", **PLAIN, "pass\\u0077ord": "ESCAPED"}).replace("\\\\u", "\\u"), "s3")
    plain_jobs(queue, 20)
    frame = both_frames(queue, secrets=("password", "api_token"))
    text = frame.to_csv() + frame.astype(str).to_string()
    for secret in ("TOP", "CASE", "NESTED", "LIST", "tok-1", "ESCAPED"):
        assert secret not in text
    by_id = frame.set_index("id")
    assert by_id.loc["s1", "password"] == "***" and by_id.loc["s1", "Password"] == "***"
    assert by_id.loc["s2", "password"] == "" and by_id.loc["s2", "api_token"] == "***"


def test_corrupt_wrong_typed_and_missing_values(queue: QueueService) -> None:
    bad = {
        "not-json": b"not json",
        "array": b"[1, 2]",
        "empty": b"",
        "blank": b"  ",
        "nan": b'{"id":"nan","count":NaN}',
        "trailing": b'{"id":"trailing"} x',
        "bad-utf8": b'{"id":"bad-utf8","username":"\xff"}',
        "too-deep": b'{"deep":' + b"[" * 5000 + b"]" * 5000 + b"}",
    }
    for job_id, raw in bad.items():
        store(queue, raw, job_id)
    odd = {
        "dup-key": b'{"count":1,"count":2}',
        "pretty": json.dumps({"id": "pretty", **PLAIN, "count": 3}, indent=2).encode(),
        "crlf": b'{"count":4,\r\n"username":"crlf"}',
        "wrong-types": json.dumps({"count": "five", "test_mode": 1, "username": 7, "priority": 1.0,
                                   "progress": 2.5, "failed": True, "error_msg": None}).encode(),
        "int64-edge": json.dumps({"count": 2**63 - 1, "progress": 2**63, "successful": -(2**63)}).encode(),
        "escaped": b'{"username":"a\\"b\\\\c\\u00e9\\n"}',
        "surrogate": b'{"username":"\\ud800"}',
        "unicode": '{"username":"zoë ✓"}'.encode(),
        "braces-in-text": b'{"username":"{[x]}"}',
    }
    for job_id, raw in odd.items():
        store(queue, raw, job_id)
    plain_jobs(queue, 40)
    store(queue, b"{}", "orphan")
    queue.redis.delete(queue.keys.data("orphan"))
    store(queue, b"{}", "finished")
    queue.redis.set(queue.keys.status("finished"), "completed")
    frame = both_frames(queue).set_index("id")
    assert frame.attrs == {"orphans": 1, "corrupt": len(bad), "not_pending": 1}
    assert not set(bad) & set(frame.index)
    assert frame.loc["dup-key", "count"] == 2  # the last one, as json.loads and Go take it
    assert frame.loc["pretty", "count"] == 3 and frame.loc["crlf", "username"] == "crlf"
    row = frame.loc["wrong-types"]
    assert pd.isna(row["count"]) and pd.isna(row["test_mode"]) and pd.isna(row["username"])
    assert row["priority"] == 0 and pd.isna(row["progress"]) and pd.isna(row["failed"])
    assert frame.loc["int64-edge", "count"] == 2**63 - 1 and pd.isna(frame.loc["int64-edge", "progress"])
    assert frame.loc["escaped", "username"] == 'a"b\\cé\n'
    assert frame.loc["surrogate", "username"] == "\ufffd"  # as Go decodes a lone surrogate
    assert frame.loc["unicode", "username"] == "zoë ✓" and frame.loc["braces-in-text", "username"] == "{[x]}"
    assert len(frame) == len(odd) + 40


_json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**65), max_value=2**65),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
)
_json_values = st.recursive(_json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)), max_leaves=6)
_times = st.one_of(
    st.sampled_from(["2026-11-27T21:07:34.5Z", "0001-01-01T00:00:00Z", "2026-02-30T00:00:00Z",
                     "2026-11-27T22:07:34.123456789+01:00", "2026-11-27"]),
    st.datetimes(timezones=st.just(pd.Timestamp.now(tz="UTC").tzinfo)).map(lambda t: t.isoformat()),
    _json_scalars,
)
_known = {
    "count": st.one_of(st.integers(0, 100), _json_scalars), "username": st.one_of(st.text(max_size=10), _json_scalars),
    "password": st.one_of(st.text(max_size=6), _json_scalars), "test_mode": st.one_of(st.booleans(), _json_scalars),
    "priority": st.one_of(st.integers(-3, 9), _json_scalars), "error_msg": st.text(max_size=10),
    "progress": st.integers(0, 5), "created_at": _times, "started_at": _times,
}
_jobs = st.lists(st.tuples(
    st.fixed_dictionaries({}, optional=_known),
    st.dictionaries(st.text(min_size=1, max_size=8), _json_values, max_size=3),
    st.booleans(),
), min_size=1, max_size=25)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(jobs=_jobs)
def test_generated_jobs_read_alike(queue: QueueService, jobs: list[tuple[dict, dict, bool]]) -> None:
    delete_keys_under(queue.redis, f"{queue.keys.prefix}:")
    for i, (known, extra, ascii_only) in enumerate(jobs):
        document = {**extra, **known}
        store(queue, json.dumps(document, ensure_ascii=ascii_only, separators=(",", ":")), f"gen-{i:03d}")
    plain_jobs(queue, 10)
    frame = both_frames(queue)
    assert len(frame) == len(jobs) + 10
