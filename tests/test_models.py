"""Job, JobStatus and Priority: parsing, Go-strict decoding and Go-compatible JSON.

The reference is Go's encoding/json decoding into ``models.Job`` (docs/wire-format.md):
what Go rejects must raise CorruptJobError, what the toolkit writes must be
decodable by Go, and unchanged Go values must come back byte for byte.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from botrix_toolkit.core.errors import CorruptJobError, InvalidInputError
from botrix_toolkit.core.models import GO_ZERO_TIME, Job, JobStatus, Priority, new_job_id
from tests.go_json import OMIT_EMPTY, assert_go_decodable


def wire(**fields: Any) -> str:
    return json.dumps({"id": "job-42", **fields})


# -- Priority ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, Priority.LOW), (1, Priority.NORMAL), (2, Priority.HIGH),
        (Priority.HIGH, Priority.HIGH), (Priority.LOW, Priority.LOW),
        ("low", Priority.LOW), ("NORMAL", Priority.NORMAL), (" high ", Priority.HIGH),
        ("High", Priority.HIGH),
    ],
)
def test_priority_parse_accepts_levels_enums_and_labels(value: Any, expected: Priority) -> None:
    parsed = Priority.parse(value)
    assert parsed is expected
    assert type(parsed) is Priority


@pytest.mark.parametrize("value", [3, -1, True, False, 1.0, 2.0, "urgent", "", None, "1", [1]])
def test_priority_parse_rejects_anything_else(value: Any) -> None:
    with pytest.raises(InvalidInputError, match="priority") as caught:
        Priority.parse(value)
    assert isinstance(caught.value, ValueError)
    assert repr(value) in str(caught.value)


@pytest.mark.parametrize(
    ("stored", "level", "label"),
    [(7, Priority.HIGH, "high"), (2, Priority.HIGH, "high"), (1, Priority.NORMAL, "normal"),
     (0, Priority.LOW, "low"), (-3, Priority.LOW, "low"), (100, Priority.HIGH, "high")],
)
def test_priority_level_and_label_clamp_out_of_range_values(stored: int, level: Priority, label: str) -> None:
    assert Priority.level_of(stored) is level
    assert Priority.label_of(stored) == label
    assert Job(id="x", priority=stored).priority_level is level


# -- JobStatus -----------------------------------------------------------------
@pytest.mark.parametrize("name", ["pending", "running", "completed", "failed", "cancelled"])
def test_job_status_parse_accepts_the_five_statuses(name: str) -> None:
    assert JobStatus.parse(name) == name
    assert JobStatus.parse(JobStatus(name)) is JobStatus(name)


def test_job_status_parse_stores_processing_as_running() -> None:
    assert JobStatus.parse("processing") is JobStatus.RUNNING


@pytest.mark.parametrize("value", ["unknown", "done", "complete", "canceled", "", None, 1, True])
def test_job_status_parse_rejects_other_values(value: Any) -> None:
    with pytest.raises(InvalidInputError, match="status"):
        JobStatus.parse(value)


def test_job_status_is_final() -> None:
    assert {s for s in JobStatus if s.is_final} == {
        JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED,
    }


# -- Job.from_wire: Go's decoder rules ------------------------------------------
def test_from_wire_reads_a_go_job() -> None:
    job = Job.from_wire(
        wire(count=3, username="u", status="pending", progress=1, successful=1, failed=0,
             test_mode=True, priority=2, created_at="2026-11-27T22:07:34.5Z",
             deleted_at=None).encode()
    )
    assert (job.id, job.count, job.username, job.priority, job.test_mode) == ("job-42", 3, "u", 2, True)
    assert job.created_at == datetime(2026, 11, 27, 22, 7, 34, 500000, tzinfo=UTC)
    assert job.deleted_at is None and job.extra == {}


@pytest.mark.parametrize(
    ("fields", "bad_field"),
    [
        ({"priority": "1"}, "priority"),
        ({"count": "3"}, "count"),
        ({"priority": 1.0}, "priority"),
        ({"progress": 1.5}, "progress"),
        ({"count": 1e2}, "count"),
        ({"priority": True}, "priority"),
        ({"username": 5}, "username"),
        ({"status": ["pending"]}, "status"),
        ({"test_mode": "true"}, "test_mode"),
        ({"test_mode": 1}, "test_mode"),
        ({"id": 42}, "id"),
    ],
)
def test_from_wire_rejects_wrong_json_types_naming_job_and_field(fields: dict, bad_field: str) -> None:
    with pytest.raises(CorruptJobError) as caught:
        Job.from_wire(json.dumps({"id": "job-42", **fields}), "job-42")
    message = str(caught.value)
    assert "'job-42'" in message and bad_field in message
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    "field_name", ["count", "priority", "progress"],
)
def test_from_wire_rejects_integers_outside_go_int64(field_name: str) -> None:
    # Go: "cannot unmarshal number 9223372036854775808 into ... of type int".
    # Accepting it would write back a job Go's DequeueJob then drops.
    with pytest.raises(CorruptJobError, match=field_name):
        Job.from_wire(f'{{"id":"job-42","{field_name}":9223372036854775808}}', "job-42")


def test_from_wire_accepts_the_int64_bounds() -> None:
    job = Job.from_wire('{"id":"job-42","count":9223372036854775807,"failed":-9223372036854775808}')
    assert (job.count, job.failed) == (2**63 - 1, -(2**63))


@pytest.mark.parametrize(
    "text",
    [
        "yesterday",
        "2026-11-27",
        "2026-11-27T22:07:34",  # no offset
        "2026-11-27 22:07:34Z",  # space instead of T
        "2026-11-27T22:07Z",  # no seconds
        "20261127T220734Z",  # ISO basic format
        "2026-11-27T22:07:34+0100",  # offset without colon
        "2026-11-27T22:07:34+01",  # hour-only offset
        "2026-W48-5T22:07:34Z",  # ISO week date
        "2026-11-27T22:07:34.Z",
        "",
    ],
)
def test_from_wire_rejects_times_that_are_not_rfc3339(text: str) -> None:
    # Go's time.Time.UnmarshalJSON parses RFC 3339 only; anything else fails the job.
    with pytest.raises(CorruptJobError, match="created_at") as caught:
        Job.from_wire(wire(created_at=text), "job-42")
    assert "'job-42'" in str(caught.value)


@pytest.mark.parametrize("value", [1764281254, True, {"t": 1}, ["2026-11-27T22:07:34Z"]])
def test_from_wire_rejects_times_that_are_not_strings(value: Any) -> None:
    with pytest.raises(CorruptJobError, match="updated_at"):
        Job.from_wire(wire(updated_at=value), "job-42")


@pytest.mark.parametrize("raw", ["[]", '["job-42"]', '"job-42"', "42", "null", "true"])
def test_from_wire_rejects_json_that_is_not_an_object(raw: str) -> None:
    with pytest.raises(CorruptJobError, match="'job-42'.*expected an object"):
        Job.from_wire(raw, "job-42")


@pytest.mark.parametrize(
    "raw",
    ["{", "", "not json", b"\xff\xfe", '{"id":"job-42"} trailing', '{"id":"job-42",}',
     '{"id":"job-42","x":NaN}', '{"id":"job-42","x":Infinity}', '{"id":"job-42","x":-Infinity}'],
)
def test_from_wire_rejects_invalid_json_naming_the_job(raw: str | bytes) -> None:
    # NaN/Infinity are not JSON: Go's decoder refuses them, and writing them back
    # (they would sit in ``extra``) would hand Go an undecodable job.
    with pytest.raises(CorruptJobError, match="'job-42'"):
        Job.from_wire(raw, "job-42")


@pytest.mark.parametrize("raw", ['{"count":1}', '{"id":""}', '{"id":null}', "{}"])
def test_from_wire_requires_an_id(raw: str) -> None:
    with pytest.raises(CorruptJobError, match="'job-42'.*no id"):
        Job.from_wire(raw, "job-42")


def test_from_wire_without_a_job_id_still_says_what_is_wrong() -> None:
    with pytest.raises(CorruptJobError, match="job data.*priority"):
        Job.from_wire('{"id":"a","priority":"x"}')


def test_from_wire_matches_field_names_case_insensitively_like_go() -> None:
    # encoding/json matches keys to fields case-insensitively: Go reads "ID" as the
    # id, and fails on a string in "Priority".
    assert Job.from_wire('{"ID":"job-42"}').id == "job-42"
    with pytest.raises(CorruptJobError, match="(?i)priority"):
        Job.from_wire('{"id":"job-42","Priority":"high"}', "job-42")


def test_from_wire_null_leaves_go_zero_values() -> None:
    job = Job.from_wire(wire(count=None, username=None, test_mode=None, created_at=None))
    assert (job.count, job.username, job.test_mode, job.created_at) == (0, "", False, None)


# -- times ----------------------------------------------------------------------
def test_go_zero_time_reads_as_none_and_is_written_back_as_zero_time() -> None:
    job = Job.from_wire(wire(created_at=GO_ZERO_TIME, updated_at=GO_ZERO_TIME, deleted_at=None))
    assert job.created_at is None and job.updated_at is None and job.deleted_at is None
    document = assert_go_decodable(job.to_json())
    assert document["created_at"] == GO_ZERO_TIME
    assert document["updated_at"] == GO_ZERO_TIME
    assert document["deleted_at"] is None
    # A job built without times (as Go's zero value) is written the same way.
    fresh = assert_go_decodable(Job(id="fresh").to_json())
    assert (fresh["created_at"], fresh["updated_at"], fresh["deleted_at"]) == (GO_ZERO_TIME, GO_ZERO_TIME, None)


def test_nanosecond_offset_times_are_written_back_byte_for_byte_when_unchanged() -> None:
    created = "2026-11-27T22:07:34.123456789+01:00"
    started = "2026-11-27T22:08:00.000000001-05:30"
    job = Job.from_wire(wire(created_at=created, updated_at=created, started_at=started))
    assert job.created_at == datetime(2026, 11, 27, 21, 7, 34, 123456, tzinfo=UTC)
    assert job.created_at.utcoffset() == timedelta(hours=1)
    job.updated_at = datetime(2026, 11, 28, 8, 0, 0, 250000, tzinfo=UTC)
    text = job.to_json()
    document = assert_go_decodable(text)
    assert f'"created_at":"{created}"' in text
    assert f'"started_at":"{started}"' in text
    assert document["updated_at"] == "2026-11-28T08:00:00.25Z"


def test_a_changed_time_is_formatted_as_go_does() -> None:
    job = Job.from_wire(wire(created_at="2026-11-27T22:07:34.123456789+01:00"))
    job.created_at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-5, minutes=-30)))
    job.completed_at = datetime(2026, 1, 2, 3, 4, 5, 120000, tzinfo=UTC)
    document = assert_go_decodable(job.to_json())
    assert document["created_at"] == "2026-01-02T03:04:05-05:30"
    assert document["completed_at"] == "2026-01-02T03:04:05.12Z"


# -- unknown fields, secrets ------------------------------------------------------
def test_unknown_fields_are_kept_and_written_back() -> None:
    extra = {"tenant": "acme", "tags": ["a", "b"], "meta": {"n": 3, "r": 0.25, "x": None}, "big": 2**53 + 1}
    job = Job.from_wire(json.dumps({"id": "job-42", "priority": 2, **extra}))
    assert job.extra == extra
    document = assert_go_decodable(job.to_json())
    assert {k: document[k] for k in extra} == extra
    assert Job.from_wire(job.to_json()).extra == extra


def test_password_is_kept_for_go_but_never_shown() -> None:
    secret = "s3cr3t-Pa55"
    job = Job.from_wire(wire(username="bob", password=secret))
    assert job.password == secret
    assert secret not in repr(job) and secret not in str(job)
    assert job.to_dict()["password"] == "***"
    assert secret not in json.dumps(job.to_dict(), default=str)
    assert job.to_dict(redact=False)["password"] == secret
    # Go reads the password from the job JSON: it must still be there.
    assert assert_go_decodable(job.to_json())["password"] == secret


def test_to_dict_is_flat_with_unknown_fields_and_no_private_state() -> None:
    job = Job.from_wire(wire(created_at="2026-11-27T22:07:34.1Z", tenant="acme"))
    flat = job.to_dict()
    assert flat["tenant"] == "acme" and flat["id"] == "job-42"
    assert "extra" not in flat and not any(name.startswith("_") for name in flat)
    assert flat["password"] == ""  # empty secret stays empty: nothing to hide


# -- to_json: what Go decodes ------------------------------------------------------
def test_to_json_has_go_types_for_every_known_field() -> None:
    job = Job.from_dict({
        "id": "job-42", "priority": "high", "count": 5, "username": "u", "password": "p",
        "progress": 2, "successful": 1, "failed": 1, "test_mode": True, "error_msg": "boom",
        "created_at": datetime(2026, 11, 27, 22, 7, 34, 123456, tzinfo=UTC),
        "started_at": "2026-11-27T22:08:00.5+01:00",
        "completed_at": datetime(2026, 11, 27, 23, 0, tzinfo=timezone(timedelta(hours=2))),
    })
    document = assert_go_decodable(job.to_json())
    assert document["priority"] == 2 and type(document["priority"]) is int
    assert document["test_mode"] is True
    assert document["deleted_at"] is None
    assert document["created_at"] == "2026-11-27T22:07:34.123456Z"
    assert document["completed_at"] == "2026-11-27T23:00:00+02:00"
    assert list(document)[:4] == ["id", "created_at", "updated_at", "deleted_at"]


def test_to_json_omits_empty_omitempty_fields_and_keeps_the_others() -> None:
    document = assert_go_decodable(Job(id="job-42").to_json())
    assert not OMIT_EMPTY & document.keys()
    assert document["deleted_at"] is None
    assert (document["count"], document["progress"], document["test_mode"]) == (0, 0, False)
    assert document["status"] == "pending" and document["priority"] == 1


def test_to_json_round_trips_through_from_wire() -> None:
    job = Job.from_dict({"id": "jöb-✓-1", "priority": 0, "username": "zoë", "password": "pw",
                         "created_at": "2026-11-27T22:07:34.123456789+01:00", "tenant": {"a": [1, 2]}})
    text = job.to_json()
    assert "jöb-✓-1" in text  # raw UTF-8, as Go writes it
    again = Job.from_wire(text)
    assert again.to_dict(redact=False) == job.to_dict(redact=False)
    assert again.to_json() == text


# -- Job.from_dict: user input ------------------------------------------------------
def test_from_dict_makes_an_id_when_missing() -> None:
    first, second = Job.from_dict({"count": 1}), Job.from_dict({"id": None})
    assert first.id and second.id and first.id != second.id
    assert re.fullmatch(r"[0-9a-f-]{36}", first.id)


def test_from_dict_accepts_processing_and_priority_labels() -> None:
    job = Job.from_dict({"id": "a", "status": "processing", "priority": " low "})
    assert (job.status, job.priority) == ("running", 0)
    assert type(job.priority) is int


@pytest.mark.parametrize(
    ("mapping", "named"),
    [
        ({"id": "a", "priority": 3}, "priority"),
        ({"id": "a", "priority": "urgent"}, "priority"),
        ({"id": "a", "status": "done"}, "status"),
        ({"id": ""}, "id"),
        ({"id": 5}, "id"),
        ({"id": "a", "count": "5"}, "count"),
        ({"id": "a", "created_at": datetime(2026, 1, 1)}, "created_at"),  # naive
        ({"id": "a", "created_at": "2026-13-01T00:00:00Z"}, "created_at"),
        ({"id": "a", "blob": object()}, "blob"),
        ({"id": "a", "ratio": float("nan")}, "ratio"),
    ],
)
def test_from_dict_rejects_bad_input_naming_the_field(mapping: dict, named: str) -> None:
    with pytest.raises(InvalidInputError, match=named):
        Job.from_dict(mapping)


@pytest.mark.parametrize("value", [["id", "a"], "job", 42, None])
def test_from_dict_rejects_non_mappings(value: Any) -> None:
    with pytest.raises(InvalidInputError, match="mapping"):
        Job.from_dict(value)


@pytest.mark.parametrize("given", [
    {"id": "a", "priority": 2, "count": 3, "username": "u", "password": "p", "test_mode": True},
    {"id": "b", "priority": "LOW", "status": "processing", "error_msg": "", "progress": 0},
    {"id": "c", "created_at": "2026-11-27T22:07:34.123456789+01:00", "updated_at": "2026-11-27T21:07:34Z",
     "deleted_at": None, "started_at": "2026-01-01T00:00:00.5Z", "source": "api", "tags": [1, {"x": None}]},
    {"id": "d", "count": None, "username": None, "completed_at": None},
])
def test_the_fast_path_of_adding_writes_what_from_dict_writes(given: dict[str, Any]) -> None:
    # plain_job_json is the fast twin of Job.from_dict + to_json: they must agree to the byte.
    from botrix_toolkit.core.models import plain_job_json, utc_now

    fast = plain_job_json(given)
    assert fast is not None, "plain values take the fast path"
    slow = Job.from_dict(given)
    slow.status = "pending"
    slow.stamp_times(utc_now())
    fast_document, slow_document = json.loads(fast[1]), json.loads(slow.to_json())
    for name in ("created_at", "updated_at"):  # "now" differs by the microseconds between the calls
        if name not in given:
            fast_document[name] = slow_document[name]
    assert list(fast_document.items()) == list(slow_document.items())
    assert (fast[0], fast[2]) == (slow.id, slow.priority)


# -- the two Go JSON encoders agree ---------------------------------------------------------------

_GO_TIMES = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=1)), timezone(timedelta(hours=-9, minutes=-30))]),
).map(lambda moment: moment.isoformat().replace("+00:00", "Z"))
_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
_INT64 = st.integers(-(2**63), 2**63 - 1)
_FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "priority": st.sampled_from([0, 1, 2, "low", " NORMAL ", "High", Priority.HIGH]),
    "status": st.sampled_from(["pending", "processing", "Running", "completed", "failed", "cancelled"]),
    **{name: st.none() | _INT64 for name in ("count", "progress", "successful", "failed")},
    **{name: st.none() | st.text() for name in ("username", "password", "error_msg")},
    "test_mode": st.none() | st.booleans(),
    **{name: st.none() | _GO_TIMES
       for name in ("created_at", "updated_at", "deleted_at", "started_at", "completed_at")},
}
_GO_NAMES = {"id", "extra", *_FIELD_VALUES}


@st.composite
def plain_jobs(draw: st.DrawFn) -> dict[str, Any]:
    """A job as a caller gives add_job plain JSON values: known fields in any order, unknown ones too."""
    job: dict[str, Any] = {"id": draw(st.text(st.characters(max_codepoint=127), min_size=1))}
    for name in draw(st.permutations(list(_FIELD_VALUES))):
        if draw(st.booleans()):
            job[name] = draw(_FIELD_VALUES[name])
    unknown = st.text(min_size=1).filter(lambda name: name not in _GO_NAMES)
    job.update(draw(st.dictionaries(unknown, _JSON_VALUES, max_size=3)))
    return job


@settings(max_examples=150, deadline=None)
@given(plain_jobs())
def test_the_fast_encoder_writes_the_same_bytes_as_job_to_json(given_job: dict[str, Any]) -> None:
    # plain_job_json (the fast path of add_job) and Job.from_dict + to_json are two encoders of
    # Go's JSON: a job must be written to the byte alike whichever path it takes.
    from botrix_toolkit.core.models import plain_job_json

    fast = plain_job_json(given_job)
    assume(fast is not None)
    assert fast is not None
    slow = Job.from_dict(given_job)
    slow.status = JobStatus.PENDING.value
    # The fast path stamped unset times with its own "now": stamp the same moment.
    unset = [name for name in ("created_at", "updated_at") if given_job.get(name) is None]
    if unset:
        slow.stamp_times(datetime.fromisoformat(json.loads(fast[1])[unset[0]]))
    assert fast[1].encode("utf-8") == slow.to_json().encode("utf-8")
    assert (fast[0], fast[2]) == (slow.id, slow.priority)


def test_new_job_ids_are_uuid4s_spelled_as_uuid_spells_them() -> None:
    ids = [new_job_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for job_id in ids:
        parsed = uuid.UUID(job_id)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, job_id)
    # every variant digit appears: the two low bits of the random digit are kept
    assert {job_id[19] for job_id in ids} == set("89ab")
