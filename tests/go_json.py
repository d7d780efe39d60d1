"""What Go's encoding/json accepts when it decodes a botrix job into models.Job.

One checker for every test that asks "could the Go service read this?": the
models tests (JSON the toolkit writes) and the wire tests (JSON in Redis).
"""

from __future__ import annotations

import json
import re
from typing import Any

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
GO_KINDS: dict[str, str] = {
    "id": "str", "created_at": "time", "updated_at": "time", "deleted_at": "nulltime",
    "count": "int", "username": "str", "password": "str", "status": "str",
    "progress": "int", "successful": "int", "failed": "int", "started_at": "time",
    "completed_at": "time", "error_msg": "str", "test_mode": "bool", "priority": "int",
}
OMIT_EMPTY = {"username", "password", "started_at", "completed_at", "error_msg"}


def _reject_constant(name: str) -> Any:
    raise AssertionError(f"{name} is not JSON: Go cannot decode it")


def assert_go_decodable(raw: bytes | str) -> dict[str, Any]:
    """Checks ``raw`` as Go's decoder into models.Job would; returns the document."""
    document = json.loads(raw, parse_constant=_reject_constant)
    assert isinstance(document, dict)
    assert set(GO_KINDS) - OMIT_EMPTY <= document.keys()
    for name, kind in GO_KINDS.items():
        if name not in document:
            continue
        value = document[name]
        if kind == "int":
            assert type(value) is int and -(2**63) <= value < 2**63, (name, value)
        elif kind == "bool":
            assert type(value) is bool, (name, value)
        elif kind == "str":
            assert type(value) is str, (name, value)
        elif kind == "time":
            assert isinstance(value, str) and RFC3339.match(value), (name, value)
        else:
            assert value is None or (isinstance(value, str) and RFC3339.match(value)), (name, value)
        if name in OMIT_EMPTY:
            assert value, f"{name} is omitempty in Go: written although empty"
    assert document["id"], "Go jobs always have an id"
    return document
