"""Job JSON values -> typed columns: the exact path, value by value.

This is the reference reading of a stored job for the job frames: every value
is decoded on its own with Python's ``json`` and typed by Go's rules, so any
value at all gets an answer. ``job_columns_arrow`` reads whole chunks on the
C++ side and hands here every value it cannot take; both give, value for
value, the same ``JobColumns`` (a test holds them to it).

The rules, per value:

- not JSON, not an object, NaN/Infinity, nested too deep: corrupt (skipped and
  counted by the caller);
- a known Go field of the right JSON type is kept, a wrong type is missing
  (Go would refuse the whole job; a frame shows what it can);
- integers must fit int64; times are read as Go reads RFC 3339 (``T`` and
  ``Z`` upper case, offset ``±hh:mm``, fraction of any length kept to the
  nanosecond) and must fit ``datetime64[ns]``; Go's zero time is missing;
- unknown fields are kept as the JSON value (str, int, float, bool, list,
  dict; None for null or absent), secrets hidden at any depth.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from botrix_toolkit.core.json_depth import nests_too_deep
from botrix_toolkit.core.models import GO_FIELD_KINDS, GO_ZERO_TIME
from botrix_toolkit.core.redaction import REDACTED, is_secret_key, redact

#: Arrow type of each known field as the frames type it (id and status are
#: read from the queue's keys, not the job JSON, but typed to be checked).
ARROW_TYPE_OF_KIND = {
    "int": pa.int64(), "str": pa.string(), "bool": pa.bool_(),
    "time": pa.timestamp("ns", "UTC"), "nulltime": pa.timestamp("ns", "UTC"),
}
KNOWN_FIELDS: tuple[str, ...] = tuple(GO_FIELD_KINDS)
#: Fields taken from the queue, not the job JSON.
FIELDS_FROM_KEYS = frozenset({"id", "status"})
#: The columns of a chunk's table: the rank in the queue, the id, then the JSON's fields.
CHUNK_SCHEMA = pa.schema(
    [("rank", pa.int64()), ("id", pa.string())]
    + [(name, ARROW_TYPE_OF_KIND[kind]) for name, kind in GO_FIELD_KINDS.items() if name not in FIELDS_FROM_KEYS]
)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_PLAIN = {"int": int, "str": str, "bool": bool}

#: RFC 3339 as Go's time.Time.UnmarshalJSON takes it; ranges of the fields
#: are in the pattern so that the C++ reader and this module agree on them.
GO_TIME_PATTERN = (
    r"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d"
    r"(?:\.\d+)?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)"
)
_GO_TIME = re.compile(GO_TIME_PATTERN, re.ASCII)
_LONG_FRACTION = re.compile(r"(\.\d{9})\d+")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


# Go's decoder refuses NaN and Infinity; Python's would take them.
_JSON = json.JSONDecoder(parse_constant=_reject_constant)


def go_time_ns(text: Any) -> int | None:
    """Nanoseconds since the epoch (UTC) of a Go time string; None for anything else."""
    if type(text) is not str or text == GO_ZERO_TIME or not _GO_TIME.fullmatch(text):
        return None
    # Go reads any number of fraction digits and keeps nine.
    text = _LONG_FRACTION.sub(r"\1", text)
    try:
        return int(pd.Timestamp(text).as_unit("ns").value)
    except (ValueError, OverflowError):
        return None  # a 30th of February, or a year datetime64[ns] cannot hold


def hidden(value: Any) -> Any:
    """A secret's value as a frame shows it: unset ("" or missing) stays, anything else is ``***``."""
    return value if value is None or value == "" else REDACTED


@dataclass
class JobColumns:
    """Typed columns of some jobs of one chunk: ``table`` (``CHUNK_SCHEMA``) and ``extra``.

    ``extra`` maps each unknown field to its values, one per row of ``table``.
    """

    table: pa.Table
    extra: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return self.table.num_rows


def empty_columns() -> JobColumns:
    return JobColumns(CHUNK_SCHEMA.empty_table())


def decode_job(raw: bytes, secrets: frozenset[str]) -> dict[str, Any] | None:
    """The job's JSON object with its secrets hidden at any depth; None when corrupt or too deep."""
    if nests_too_deep(raw):
        return None
    try:
        document = _JSON.decode(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    if type(document) is not dict:
        return None
    return redact(document, secrets)


def exact_columns(
    ranks: Sequence[int], ids: Sequence[str], values: Sequence[bytes], secrets: frozenset[str]
) -> tuple[JobColumns, int]:
    """The typed columns of ``values`` read one by one, and how many were corrupt."""
    known: dict[str, list[Any]] = {name: [] for name in CHUNK_SCHEMA.names}
    extra: dict[str, list[Any]] = {}
    corrupt = rows = 0
    for rank, job_id, raw in zip(ranks, ids, values):
        document = decode_job(raw, secrets)
        if document is None:
            corrupt += 1
            continue
        known["rank"].append(rank)
        known["id"].append(job_id)
        for name, kind in GO_FIELD_KINDS.items():
            if name not in FIELDS_FROM_KEYS:
                known[name].append(_typed(kind, document.get(name)))
        for name, value in document.items():
            if name not in GO_FIELD_KINDS:
                extra.setdefault(name, [None] * rows).append(value)
        rows += 1
        for column in extra.values():
            if len(column) < rows:
                column.append(None)
    table = pa.table({name: pa.array(known[name], CHUNK_SCHEMA.field(name).type) for name in CHUNK_SCHEMA.names})
    return JobColumns(table, extra), corrupt


def _typed(kind: str, value: Any) -> Any:
    if kind == "time" or kind == "nulltime":
        return go_time_ns(value)
    if type(value) is not _PLAIN[kind]:
        return None  # bool is not an int here, as in Go
    plain: Any = value  # of the kind's own type from here (the check above, which mypy cannot follow)
    if kind == "int" and not _INT64_MIN <= plain <= _INT64_MAX:
        return None
    if kind == "str" and not plain.isascii():
        # A lone surrogate (an escape like \ud800) reads as U+FFFD, as Go reads it.
        return _LONE_SURROGATE.sub("\ufffd", plain)
    return plain


def merge_columns(parts: Sequence[JobColumns]) -> JobColumns:
    """The parts' rows in rank order, as one JobColumns (extra fields aligned)."""
    parts = [part for part in parts if part.rows]
    if not parts:
        return empty_columns()
    if len(parts) == 1:
        return parts[0]
    table = pa.concat_tables([part.table for part in parts])
    extra = concat_extra(parts)
    order = table.column("rank").to_numpy().argsort(kind="stable")
    positions = order.tolist()
    return JobColumns(table.take(pa.array(order)), {name: [values[i] for i in positions]
                                                  for name, values in extra.items()})


def concat_extra(parts: Sequence[JobColumns]) -> dict[str, list[Any]]:
    """The parts' extra fields end to end, None where a part lacks a field."""
    names = list(dict.fromkeys(name for part in parts for name in part.extra))
    return {name: [value for part in parts for value in part.extra.get(name, [None] * part.rows)]
            for name in names}


def secret_columns(names: Sequence[str], secrets: frozenset[str]) -> list[str]:
    """The top-level fields among ``names`` whose values are never shown."""
    return [name for name in names if is_secret_key(name, secrets)]


def hide_secrets(table: pa.Table, extra: dict[str, list[Any]], secrets: frozenset[str]) -> pa.Table:
    """``table`` with its secret known columns hidden; ``extra``'s secret fields hidden in place.

    A secret known column of text keeps "" and missing, anything else is
    ``***``; a secret column of another type (a user's own secret names) is
    missing throughout, as the exact path types the ``***`` it finds there.
    """
    for name in secret_columns(CHUNK_SCHEMA.names, secrets):
        if name in ("rank", "id"):
            continue
        index = table.schema.get_field_index(name)
        column = table.column(index)
        if column.type == pa.string():
            shown = pc.if_else(pc.or_kleene(pc.is_null(column), pc.equal(column, "")), column, REDACTED)
        else:
            shown = pa.nulls(table.num_rows, column.type)
        table = table.set_column(index, name, shown)
    for name in secret_columns(list(extra), secrets):
        extra[name] = [hidden(value) for value in extra[name]]
    return table
