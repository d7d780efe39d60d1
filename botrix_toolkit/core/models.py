"""Job, JobStatus and Priority: parsing, validation and Go-compatible JSON.

The job JSON is the Go service's ``models.Job`` (see docs/wire-format.md). Reading is
as strict as Go's ``encoding/json`` on the known fields, because a job that Go
cannot decode is a job Go's ``DequeueJob`` pops and drops. Unknown fields are
kept untouched in ``Job.extra`` and written back, so a job written by the Go
service and requeued by the toolkit loses nothing; time strings that were not
changed are written back byte for byte (Go keeps nanoseconds, Python does not).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from functools import lru_cache
from typing import Any

from botrix_toolkit.core.errors import CorruptJobError, InvalidInputError
from botrix_toolkit.core.json_depth import MAX_JSON_DEPTH, nests_too_deep, too_deep_message
from botrix_toolkit.core.redaction import redacted

# Go's time.Time zero value, which a job built without times carries.
GO_ZERO_TIME = "0001-01-01T00:00:00Z"


class Priority(IntEnum):
    LOW = 0
    NORMAL = 1
    HIGH = 2

    @classmethod
    def parse(cls, value: Any) -> Priority:
        """A priority from 0/1/2, a ``Priority`` or ``"low"``/``"normal"``/``"high"``."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            try:
                return cls[value.strip().upper()]
            except KeyError:
                pass
        # bool is an int in Python; True is not a priority.
        elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 2:
            return cls(value)
        raise InvalidInputError(
            f"priority must be 0, 1, 2 or 'low', 'normal', 'high'; got {value!r}"
        )

    @classmethod
    def level_of(cls, value: int) -> Priority:
        """The level a stored priority counts in: above 2 is high, below 0 is low."""
        return cls(min(max(int(value), cls.LOW), cls.HIGH))

    @classmethod
    def label_of(cls, value: int) -> str:
        return cls.level_of(value).name.lower()


class JobStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @classmethod
    def parse(cls, value: Any) -> JobStatus:
        """A status as the Go service accepts it: ``processing`` is stored as ``running``."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            text = value.strip().lower()
            if text == "processing":
                return cls.RUNNING
            try:
                return cls(text)
            except ValueError:
                pass
        allowed = ", ".join(s.value for s in cls)
        raise InvalidInputError(f"status must be one of {allowed} or processing; got {value!r}")

    @property
    def is_final(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


# The RFC 4122 variant keeps a uuid4's 17th hex digit in 8-b: each digit mapped there by its two low bits.
_VARIANT_DIGIT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def new_job_id() -> str:
    """The id given to a job added without one: a uuid4, as ``str(uuid.uuid4())`` spells it.

    Formatted from the random bytes directly: a third of the time of
    building a ``UUID`` object, for every job of a bulk add.
    """
    digits = os.urandom(16).hex()
    return (f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-{_VARIANT_DIGIT[digits[16]]}{digits[17:20]}-"
            f"{digits[20:]}")


def validate_job_id(job_id: Any) -> str:
    """The id as a non-empty string that has a UTF-8 form, or an InvalidInputError naming it."""
    if not isinstance(job_id, str) or not job_id:
        raise InvalidInputError(f"job id must be a non-empty string; got {job_id!r}")
    if not job_id.isascii():
        try:
            job_id.encode("utf-8")
        except UnicodeEncodeError:
            # A lone surrogate: no Redis key can spell it.
            raise InvalidInputError(f"job id {job_id!r} is not valid Unicode text") from None
    return job_id


# What Go's time.Time.UnmarshalJSON accepts: RFC 3339, with a fraction of 1-9 digits.
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})", re.ASCII
)


# Cached: a job's created_at and updated_at are usually one string, and jobs
# added together share theirs; a datetime is immutable, so sharing is safe.
@lru_cache(maxsize=4096)
def parse_go_time(text: str) -> datetime | None:
    """An RFC 3339 time as Go writes it; Go's zero time is None."""
    if text == GO_ZERO_TIME:
        return None
    if not _RFC3339.fullmatch(text):
        raise ValueError(f"time {text[:40]!r} is not RFC 3339")
    # fromisoformat reads 'Z', offsets and up to 9 fraction digits (truncated to us).
    return datetime.fromisoformat(text)


def format_go_time(moment: datetime | None) -> str:
    """RFC 3339 as Go's MarshalJSON writes it: 'Z' for UTC, fraction without trailing zeros."""
    if moment is None:
        return GO_ZERO_TIME
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    offset = moment.utcoffset()
    if not offset:
        return text + "Z"
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{text}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def utc_now() -> datetime:
    return datetime.now(UTC)


# JSON layout of Go's models.Job, in struct order: (name, kind, omitted when empty).
_INT, _STR, _BOOL, _TIME, _NULLTIME = "int", "str", "bool", "time", "nulltime"
_GO_FIELDS: tuple[tuple[str, str, bool], ...] = (
    ("id", _STR, False),
    ("created_at", _TIME, False),
    ("updated_at", _TIME, False),
    ("deleted_at", _NULLTIME, False),
    ("count", _INT, False),
    ("username", _STR, True),
    ("password", _STR, True),
    ("status", _STR, False),
    ("progress", _INT, False),
    ("successful", _INT, False),
    ("failed", _INT, False),
    ("started_at", _NULLTIME, True),
    ("completed_at", _NULLTIME, True),
    ("error_msg", _STR, True),
    ("test_mode", _BOOL, False),
    ("priority", _INT, False),
)
_GO_FIELD_KIND = {name: kind for name, kind, _ in _GO_FIELDS}
_GO_FIELD_BY_LOWER = {name.lower(): name for name in _GO_FIELD_KIND}
_PLAIN_TYPE = {_INT: int, _STR: str, _BOOL: bool}
# Each field's JSON type when it needs no conversion (times always do: None),
# so that reading a job costs one lookup and one type test per field.
_PLAIN_WIRE_TYPE = {name: _PLAIN_TYPE.get(kind) for name, kind in _GO_FIELD_KIND.items()}
_UNKNOWN = object()
_ZERO_VALUES = {_INT: 0, _STR: "", _BOOL: False}
# Go's int is 64 bits: a larger number fails to decode.
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
TIME_FIELDS = tuple(name for name, kind, _ in _GO_FIELDS if kind in (_TIME, _NULLTIME))
#: Each Go field's JSON kind, for readers that type columns: "int", "str", "bool", "time", "nulltime".
GO_FIELD_KINDS: dict[str, str] = dict(_GO_FIELD_KIND)


@dataclass
class Job:
    """One botrix job, with the Go model's fields and any unknown ones in ``extra``."""

    id: str = ""
    priority: int = 1  # Priority.NORMAL, as a plain int
    status: str = JobStatus.PENDING.value
    count: int = 0
    username: str = ""
    password: str = field(default="", repr=False)
    progress: int = 0
    successful: int = 0
    failed: int = 0
    test_mode: bool = False
    error_msg: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    deleted_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # Time strings as read, so unchanged times are written back exactly.
    _raw_times: dict[str, tuple[datetime | None, str]] = field(
        default_factory=dict, repr=False, compare=False
    )

    # -- reading ---------------------------------------------------------
    @classmethod
    def from_wire(cls, raw: bytes | str, job_id: str | None = None) -> Job:
        """A job from the JSON stored in Redis, decoded by Go's rules.

        Raises CorruptJobError naming the job id and what is wrong, also for
        JSON that nests deeper than ``MAX_JSON_DEPTH`` (json_depth.py).
        """
        if nests_too_deep(raw):
            raise CorruptJobError(too_deep_message(_job_named(job_id)))
        if isinstance(raw, bytes):
            # Go replaces invalid UTF-8 with U+FFFD rather than failing.
            raw = raw.decode("utf-8", "replace")
        try:
            document = _decode_json(raw)
        except ValueError as exc:
            raise CorruptJobError(f"{_job_named(job_id)} is not valid JSON: {exc}") from None
        except RecursionError:  # only when called with the stack already nearly full
            raise CorruptJobError(too_deep_message(_job_named(job_id))) from None
        if not isinstance(document, dict):
            raise CorruptJobError(
                f"{_job_named(job_id)} is JSON {type(document).__name__}, expected an object"
            )
        values: dict[str, Any] = {}
        raw_times: dict[str, tuple[datetime | None, str]] = {}
        extra: dict[str, Any] = {}
        for name, value in document.items():
            plain_type = _PLAIN_WIRE_TYPE.get(name, _UNKNOWN)
            if plain_type is _UNKNOWN:
                # Go matches keys to fields case-insensitively; later keys win.
                canonical = _GO_FIELD_BY_LOWER.get(name.lower())
                if canonical is None:
                    extra[name] = value
                    continue
                name, plain_type = canonical, _PLAIN_WIRE_TYPE[canonical]
            if type(value) is plain_type and (plain_type is not int or _INT64_MIN <= value <= _INT64_MAX):
                values[name] = value  # the common case: a worker decodes every job it takes
                continue
            kind = _GO_FIELD_KIND[name]
            try:
                values[name] = _decode_go_value(kind, value)
            except (TypeError, ValueError) as exc:
                raise CorruptJobError(f"{_job_named(job_id)}: field {name!r}: {exc}") from None
            if kind in (_TIME, _NULLTIME) and isinstance(value, str):
                raw_times[name] = (values[name], value)
        if not values.get("id"):
            raise CorruptJobError(f"{_job_named(job_id)} has no id")
        job = cls(**values, extra=extra)
        job._raw_times = raw_times
        return job

    @classmethod
    def from_dict(cls, mapping: Job | Mapping[str, Any]) -> Job:
        """A job from user input: priority labels, datetimes or RFC 3339 strings.

        Missing id: a uuid4 is made. Raises InvalidInputError naming the field.
        """
        if isinstance(mapping, Job):
            return mapping
        if not isinstance(mapping, Mapping):
            raise InvalidInputError(
                f"a job must be a Job or a mapping; got {type(mapping).__name__}"
            )
        values: dict[str, Any] = {}
        raw_times: dict[str, tuple[datetime | None, str]] = {}
        given_extra = mapping.get("extra") or {}
        if not isinstance(given_extra, Mapping):
            raise InvalidInputError(
                f"job field 'extra' must be a mapping of field names; got {type(given_extra).__name__}"
            )
        extra: dict[str, Any] = {}
        for name, value in given_extra.items():
            _check_json_value(name, value)
            extra[name] = value
        for name, value in mapping.items():
            if name == "extra" or (name == "id" and value is None):
                continue
            if name == "id":
                values[name] = validate_job_id(value)
            elif name == "priority":
                values[name] = int(Priority.parse(value))
            elif name == "status":
                values[name] = JobStatus.parse(value).value
            elif name in _GO_FIELD_KIND:
                kind = _GO_FIELD_KIND[name]
                # The common, already-correct values skip the general checks:
                # adding jobs in bulk spends most of its Python time here.
                # (mypy cannot narrow value through the lookup: it is an int when kind is _INT)
                if type(value) is _PLAIN_TYPE.get(kind) and (
                    kind is not _INT or _INT64_MIN <= value <= _INT64_MAX  # type: ignore[operator]
                ):
                    values[name] = value
                    continue
                values[name] = _coerce_user_value(name, kind, value)
                if isinstance(value, str) and name in TIME_FIELDS:
                    raw_times[name] = (values[name], value)
            else:
                _check_json_value(name, value)
                extra[name] = value
        job = cls(**values, extra=extra)
        job._raw_times = raw_times
        if not job.id:
            job.id = new_job_id()
        return job

    def stamp_times(self, moment: datetime) -> None:
        """Sets created_at and updated_at to ``moment`` where they are unset."""
        text = None
        for name in ("created_at", "updated_at"):
            if getattr(self, name) is None:
                text = text or format_go_time(moment)
                setattr(self, name, moment)
                # Formatting is a third of the cost of writing a job: do it once.
                self._raw_times = {**self._raw_times, name: (moment, text)}

    # -- writing ---------------------------------------------------------
    def to_wire_dict(self) -> dict[str, Any]:
        """The job as Go's encoding/json would write it (struct order, omitempty)."""
        document: dict[str, Any] = {}
        raw_times = self._raw_times
        for name, kind, omit_empty in _GO_FIELDS:
            value = getattr(self, name)
            if kind is _TIME or kind is _NULLTIME:
                raw = raw_times.get(name)
                if raw is not None and raw[0] == value:
                    document[name] = raw[1]
                elif value is not None:
                    document[name] = format_go_time(value)
                elif kind is _TIME:
                    document[name] = GO_ZERO_TIME
                elif not omit_empty:
                    document[name] = None
            elif value or not omit_empty:
                document[name] = value
        for name, value in self.extra.items():
            document.setdefault(name, value)
        return document

    def to_json(self) -> str:
        """Go-compatible JSON text of the job.

        InvalidInputError when a field holds what JSON cannot (NaN, an
        object) or nests deeper than ``MAX_JSON_DEPTH``.
        """
        document = self.to_wire_dict()
        try:
            text = json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
            if not text.isascii():
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    # A lone surrogate read from a \ud800 escape: keep it escaped.
                    text = json.dumps(document, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"job {self.id!r} is not JSON-serialisable: {exc}") from None
        except RecursionError:
            raise InvalidInputError(too_deep_message(f"job {self.id!r}")) from None
        if nests_too_deep(text):
            raise InvalidInputError(too_deep_message(f"job {self.id!r}"))
        return text

    def to_dict(self, redact: bool = True) -> dict[str, Any]:
        """A flat dict of every field (unknown ones too); secrets redacted by default."""
        document = {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}
        extra = document.pop("extra")
        for name, value in extra.items():
            document.setdefault(name, value)
        return redacted(document) if redact else document

    def __repr__(self) -> str:
        """The dataclass repr, with every secret hidden at any depth (redaction.py)."""
        shown = ", ".join(f"{f.name}={redacted(getattr(self, f.name))!r}" for f in fields(self) if f.repr)
        return f"{type(self).__name__}({shown})"

    @property
    def priority_level(self) -> Priority:
        return Priority.level_of(self.priority)


_STATUS_VALUES = frozenset(status.value for status in JobStatus) | {"processing"}


def plain_job_json(mapping: Mapping[str, Any]) -> tuple[str, str, int] | None:
    """(id, Go JSON, priority) of a job given as plain JSON values, or None.

    The fast path of adding a job: a dict whose known fields already hold
    the right JSON types (and RFC 3339 time strings) goes straight to Go's
    JSON, without building a Job. Anything else gives None, and the caller
    takes ``Job.from_dict``, which accepts more and explains what is wrong.
    Unset created_at and updated_at are set to now.
    """
    if "extra" in mapping:
        return None
    job_id = mapping.get("id")
    if job_id is None:
        job_id = new_job_id()
    elif type(job_id) is not str or not job_id or not job_id.isascii():
        return None
    priority = mapping.get("priority", 1)
    if type(priority) is str:
        priority = Priority.__members__.get(priority.strip().upper())
    if type(priority) is not int and not isinstance(priority, Priority) or not 0 <= priority <= 2:
        return None
    status = mapping.get("status", "pending")
    if type(status) is not str or status.strip().lower() not in _STATUS_VALUES:
        return None
    document: dict[str, Any] = {}
    now = None
    for name, kind, omit_empty in _GO_FIELDS:
        value = mapping.get(name)
        if name == "id":
            value = job_id
        elif name == "priority":
            value = int(priority)
        elif name == "status":
            value = JobStatus.PENDING.value
        elif value is None:
            if kind is _TIME:
                value = now = now or format_go_time(utc_now())
            elif omit_empty:
                continue
            elif kind is _NULLTIME:
                value = None
            else:
                value = _ZERO_VALUES[kind]
        elif kind is _TIME or kind is _NULLTIME:
            if type(value) is not str or not _RFC3339.fullmatch(value):
                return None
            try:
                datetime.fromisoformat(value)  # ranges: month 13 is RFC 3339-shaped
            except ValueError:
                return None
        elif type(value) is not _PLAIN_TYPE[kind] or (
            # an int here when kind is _INT (mypy cannot narrow through the lookup)
            kind is _INT and not _INT64_MIN <= value <= _INT64_MAX  # type: ignore[operator]
        ):
            return None
        elif omit_empty and not value:
            continue
        document[name] = value
    for name, value in mapping.items():
        if name not in _GO_FIELD_KIND:
            document[name] = value
    try:
        text = json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        if not text.isascii():
            text.encode("utf-8")
    except (TypeError, ValueError, RecursionError):
        return None
    if nests_too_deep(text):
        return None  # from_dict names the field
    return job_id, text, int(priority)


def _decode_go_value(kind: str, value: Any) -> Any:
    """A JSON value of a known field, checked as Go's decoder checks it."""
    if kind in (_NULLTIME, _TIME) and value is None:
        # Go leaves a time unchanged on null: the zero time, or nil for a pointer.
        return None
    if kind == _INT:
        if value is None:
            return 0
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"expected an integer, got {_preview(value)}")
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"integer {value} does not fit Go's int64")
        return value
    if kind == _STR:
        if value is None:
            return ""
        if not isinstance(value, str):
            raise TypeError(f"expected a string, got {_preview(value)}")
        return value
    if kind == _BOOL:
        if value is None:
            return False
        if not isinstance(value, bool):
            raise TypeError(f"expected a boolean, got {_preview(value)}")
        return value
    if not isinstance(value, str):
        raise TypeError(f"expected an RFC 3339 time string, got {_preview(value)}")
    return parse_go_time(value)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


# One decoder for every job read: json.loads with a hook builds a new one per call.
_GO_JSON = json.JSONDecoder(parse_constant=_reject_constant)


def _decode_json(text: str) -> Any:
    """JSON text decoded; the common form, nothing around the value, skips two whitespace scans."""
    try:
        document, end = _GO_JSON.raw_decode(text)
        if end == len(text):
            return document
    except ValueError:
        pass
    return _GO_JSON.decode(text)  # whitespace around the value, or the error to report


def _job_named(job_id: str | None) -> str:
    """How an error message names a job being read."""
    return f"job {job_id!r}" if job_id is not None else "job data"


def _coerce_user_value(name: str, kind: str, value: Any) -> Any:
    try:
        if kind in (_TIME, _NULLTIME):
            if value is None or isinstance(value, datetime):
                if value is not None and value.tzinfo is None:
                    raise ValueError("a datetime needs a timezone")
                return value
            return _decode_go_value(kind, value)
        return _decode_go_value(kind, value)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"job field {name!r}: {exc}") from None


def _preview(value: Any) -> str:
    """The start of a value's JSON text for an error message, whatever the value."""
    try:
        return json.dumps(value)[:40]
    except (TypeError, ValueError, RecursionError):
        return type(value).__name__


def _check_json_value(name: str, value: Any) -> None:
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"job field {name!r} is not JSON-serialisable: {exc}") from None
    except RecursionError:
        text = ""  # deeper than Python can encode: surely deeper than the limit
    # The job's own object is one level: a field may nest one level less.
    if not text or nests_too_deep(text, MAX_JSON_DEPTH - 1):
        raise InvalidInputError(too_deep_message(f"job field {name!r}") + " (the job's own object counts as one)")
