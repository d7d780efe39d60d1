"""How deep a JSON document may nest: the limit, and a check on raw text before parsing.

A job, a result or an event message that nests deeper than ``MAX_JSON_DEPTH``
containers (objects and arrays, the outermost one counted) is refused on the
way in (``InvalidInputError``) and treated as corrupt on the way out. Why 64:
Python's ``json`` recurses once per level in C, and everything that walks a
parsed job after it (secret redaction, ``repr``, pandas, the dashboard's JSON
text) recurses in Python, at most a few frames per level; the dashboard runs
that code already a few hundred frames deep under Streamlit. 64 levels keep
every one of those walks far below Python's default recursion limit of 1,000
whoever calls it, and are far above any real job (the Go job is flat; extra
fields nest two or three levels). Go's own decoder accepts up to 10,000
levels, so a Go client could write a deeper job: the toolkit sets it aside.

The check costs two ``bytes.count`` calls on the usual value (fewer brackets
than the limit cannot nest deeper than it), so it sits on the hot path of
every read; only a value with more brackets than the limit is scanned fully.
"""

from __future__ import annotations

import re

#: The most containers (objects, arrays) a JSON document may nest, the outermost counted.
MAX_JSON_DEPTH = 64

# A JSON string, escapes included: brackets inside one do not nest anything.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
# Every byte but brackets is deleted; objects and arrays count alike.
_TO_BRACKETS = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def nests_too_deep(raw: bytes | str, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when the JSON text ``raw`` nests more than ``limit`` containers deep.

    Text that is not JSON gives an answer about its brackets only; the parser
    that follows reports what else is wrong with it.
    """
    if isinstance(raw, str):
        if raw.count("[") + raw.count("{") <= limit:
            return False
        raw = raw.encode("utf-8", "surrogatepass")
    elif raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    return _depth_exceeds(raw, limit)


def _depth_exceeds(raw: bytes, limit: int) -> bool:
    brackets = _STRING.sub(b"", raw).translate(_TO_BRACKETS, _NOT_BRACKETS)
    if b"[" * (limit + 1) in brackets:
        return True  # the usual poison: one long run of openings
    # Each pass removes the innermost level (an empty pair); a document of
    # depth d is gone after d passes. Unbalanced brackets never go: too deep.
    for _ in range(limit):
        brackets = brackets.replace(b"[]", b"")
        if not brackets:
            return False
    return True


def too_deep_message(what: str, limit: int = MAX_JSON_DEPTH) -> str:
    """The reason given for a refused or set-aside value: ``what`` names it."""
    return f"{what} nests deeper than {limit} levels of JSON objects and arrays"
