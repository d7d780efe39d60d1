"""Job JSON values -> typed columns on the C++ side: the fast path of the job frames.

A chunk's values are joined as newline-delimited JSON and read by pyarrow's
JSON reader with an explicit schema for the Go fields: no Python object per
row or per field. It takes only what it reads exactly as ``job_columns``
(the exact path) does, and hands everything else there:

- a raw-bytes check routes a value to the exact path when it holds a newline
  or carriage return, does not start with ``{`` and end with ``}``, nests
  anything (a second ``{`` or any ``[``: nested secrets and depth limits are
  the exact path's), spells anything with a ``\\u`` escape (a secret key
  could hide behind one) or is not UTF-8. The check runs over the joined
  chunk first, so a chunk of plain jobs costs a few ``bytes.count`` calls;
- the reader refuses a wrong type in a known field, a duplicate key or bad
  JSON: the chunk is split in halves until the refused values are alone, and
  those go to the exact path;
- an unknown field the reader typed as a number with a fraction (it cannot
  tell ``1`` from ``1.0``) sends its rows to the exact path;
- a time the C++ parser refuses (a 30th of February, a year beyond
  ``datetime64[ns]``, more than nine fraction digits) is read by the exact
  path's parser, for that column of that chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from botrix_toolkit.core.models import GO_FIELD_KINDS, GO_ZERO_TIME
from botrix_toolkit.frames.job_columns import (
    ARROW_TYPE_OF_KIND,
    CHUNK_SCHEMA,
    FIELDS_FROM_KEYS,
    GO_TIME_PATTERN,
    JobColumns,
    exact_columns,
    go_time_ns,
    merge_columns,
)

_TIMESTAMP = pa.timestamp("ns", "UTC")
# Times are read as text and checked here: the reader's own timestamp parser takes forms Go refuses.
_READ_SCHEMA = pa.schema([
    (name, pa.string() if kind in ("time", "nulltime") else ARROW_TYPE_OF_KIND[kind])
    for name, kind in GO_FIELD_KINDS.items()
])
_PARSE = pj.ParseOptions(explicit_schema=_READ_SCHEMA, unexpected_field_behavior="infer")
_TIME_FIELDS = tuple(name for name, kind in GO_FIELD_KINDS.items() if kind in ("time", "nulltime"))
_WHOLE_GO_TIME = f"^{GO_TIME_PATTERN}$"
# Unknown fields of these types hold exactly the values json.loads gives.
_EXACT_EXTRA_TYPES = (pa.types.is_string, pa.types.is_boolean, pa.types.is_int64, pa.types.is_null)
_NOT_MARKS = bytes(byte for byte in range(256) if byte not in b"{}[]\n\r\\")
# A refused piece this small is read value by value rather than split further.
_SMALLEST_SPLIT = 8


def arrow_columns(
    ranks: np.ndarray, raw_ids: Sequence[bytes], values: Sequence[bytes], secrets: frozenset[str]
) -> tuple[JobColumns, int]:
    """The typed columns of one chunk's pending values, and how many were corrupt.

    ``ranks``, ``raw_ids`` and ``values`` are parallel: each value is a job's
    stored JSON, none missing.
    """
    count = len(values)
    joined = b"\n".join(values)
    if _all_plain(joined, count):
        plain = list(range(count))
        other: list[int] = []
    else:
        plain, other = [], []
        for index, value in enumerate(values):
            (plain if _is_plain(value) else other).append(index)
    parts: list[JobColumns] = []
    if plain:
        ids = _id_texts(raw_ids)
        tables, refused = _read_plain(joined if not other else None, values, plain)
        for table, positions in tables:
            columns, leftovers = _typed(table, ranks[positions], ids.take(pa.array(positions)))
            parts.append(columns)
            other.extend(positions[i] for i in leftovers)
        other.extend(refused)
    corrupt = 0
    if other:
        other.sort()
        exact, corrupt = exact_columns(
            ranks[other].tolist(), [raw_ids[i].decode("utf-8", "replace") for i in other],
            [values[i] for i in other], secrets,
        )
        parts.append(exact)
    return merge_columns(parts), corrupt


def _all_plain(joined: bytes, count: int) -> bool:
    """Whether every one of the ``count`` values joined by newlines passes ``_is_plain``.

    One pass keeps only the bytes that matter (braces, brackets, line ends,
    backslashes): a chunk of flat one-line objects leaves ``{}`` per value.
    """
    marks = joined.translate(None, _NOT_MARKS)
    expected = b"{}\n" * (count - 1) + b"{}"
    if marks != expected and (b"\\u" in joined or marks.replace(b"\\", b"") != expected):
        return False
    return joined[:1] == b"{" and joined[-1:] == b"}" and (joined.isascii() or _is_utf8(joined))


def _is_plain(value: bytes) -> bool:
    """A flat JSON object on one line, without escapes spelled \\uXXXX, in UTF-8 (as far as bytes tell)."""
    return (
        value[:1] == b"{" and value[-1:] == b"}" and value.count(b"{") == 1
        and b"[" not in value and b"\n" not in value and b"\r" not in value and b"\\u" not in value
        and (value.isascii() or _is_utf8(value))
    )


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _id_texts(raw_ids: Sequence[bytes]) -> pa.Array:
    try:
        return pa.array(raw_ids, pa.binary()).cast(pa.string())
    except pa.ArrowInvalid:  # an id that is not UTF-8: replaced as the exact path replaces it
        return pa.array([raw.decode("utf-8", "replace") for raw in raw_ids], pa.string())


def _read_plain(
    joined: bytes | None, values: Sequence[bytes], plain: list[int]
) -> tuple[list[tuple[pa.Table, list[int]]], list[int]]:
    """Tables of the ``plain`` values (with their positions) and the positions the reader refused.

    A refused piece is split in halves, so one bad value costs a few more
    reads of its neighbours rather than a whole chunk on the exact path.
    """
    tables: list[tuple[pa.Table, list[int]]] = []
    refused: list[int] = []
    pieces = [plain]
    while pieces:
        positions = pieces.pop()
        text = joined if joined is not None and len(positions) == len(values) else (
            b"\n".join([values[i] for i in positions]))
        try:
            table = pj.read_json(
                pa.BufferReader(text),
                read_options=pj.ReadOptions(use_threads=False, block_size=len(text) + 1),
                parse_options=_PARSE,
            )
        except pa.ArrowInvalid:
            table = None
        if table is not None and table.num_rows == len(positions):
            tables.append((table, positions))
        elif len(positions) <= _SMALLEST_SPLIT:
            refused.extend(positions)
        else:
            middle = len(positions) // 2
            pieces += [positions[middle:], positions[:middle]]
    return tables, refused


def _typed(read: pa.Table, ranks: np.ndarray, ids: pa.Array) -> tuple[JobColumns, list[int]]:
    """The reader's table as ``CHUNK_SCHEMA`` columns, and the rows left for the exact path."""
    columns: dict[str, Any] = {"rank": pa.array(ranks, pa.int64()), "id": ids}
    for name in CHUNK_SCHEMA.names[2:]:
        column = read.column(name)
        columns[name] = _times(column) if name in _TIME_FIELDS else column
    extra: dict[str, list[Any]] = {}
    leftover = None
    for name in read.column_names[len(_READ_SCHEMA):]:
        column = read.column(name)
        if any(exact_type(column.type) for exact_type in _EXACT_EXTRA_TYPES):
            extra[name] = column.to_pylist()
        else:
            # 1 and 1.0 both read as a double: those rows are read value by value.
            present = pc.is_valid(column)
            leftover = present if leftover is None else pc.or_(leftover, present)
    table = pa.table(columns, schema=CHUNK_SCHEMA)
    if leftover is None or not pc.any(leftover).as_py():
        return JobColumns(table, extra), []
    keep = pc.invert(leftover)
    kept = np.flatnonzero(keep.to_numpy(zero_copy_only=False))
    extra = {name: [values[i] for i in kept] for name, values in extra.items()}
    return JobColumns(table.filter(keep), extra), np.flatnonzero(leftover.to_numpy(zero_copy_only=False)).tolist()


def _times(column: pa.ChunkedArray) -> pa.ChunkedArray | pa.Array:
    """Go time strings as UTC nanoseconds; anything Go would refuse, and its zero time, missing."""
    if column.null_count == len(column):
        return pa.nulls(len(column), _TIMESTAMP)
    valid = pc.and_kleene(pc.match_substring_regex(column, _WHOLE_GO_TIME), pc.not_equal(column, GO_ZERO_TIME))
    text = pc.if_else(valid, column, pa.scalar(None, pa.string()))
    try:
        return text.cast(_TIMESTAMP)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.array([go_time_ns(value) for value in column.to_pylist()], _TIMESTAMP)


assert FIELDS_FROM_KEYS <= set(_READ_SCHEMA.names)
