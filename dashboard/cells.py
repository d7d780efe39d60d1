"""How text from the queue is put on the page: escaped, cut to a readable length, secrets hidden.

Job ids and values are written by anyone who can reach the server. A control
character or a right-to-left override (U+202E) would reorder or hide what a
person reads, so every character that is not printable is shown as its
escape (``\\u202e``, ``\\n``), as ``repr`` writes it. A value of a megabyte
would cost every viewer a megabyte on every refresh, so a table cell holds at
most ``MAX_CELL_CHARS`` characters and says how long the whole value is.
Kept free of Streamlit, like snapshot.py, so the bench and the tests call it.
"""

from __future__ import annotations

import json
import math
from typing import Any

from botrix_toolkit.core.redaction import redacted

#: The most characters of one value shown in a table cell.
MAX_CELL_CHARS = 200


def escaped(text: str) -> str:
    """``text`` with every character that is not printable written as its escape."""
    if text.isprintable():
        return text  # the usual case, checked in C
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def cut(text: str, limit: int = MAX_CELL_CHARS) -> str:
    """The first ``limit`` characters of ``text``, saying how long it was when cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text):,} characters)"


def shown(text: str, limit: int = MAX_CELL_CHARS) -> str:
    """Text as a table cell or a message shows it: cut, then escaped."""
    return escaped(cut(text, limit))


def cell(value: Any) -> Any:
    """A value of a job frame as a table cell: text cut and escaped, nested values as JSON text.

    Nested values are redacted again on the way (the frames already hide
    secrets; this keeps the page safe whatever frame it is given).
    """
    if isinstance(value, str):
        return shown(value)
    if isinstance(value, (dict, list)):
        try:
            text = json.dumps(redacted(value), ensure_ascii=False)
        except (TypeError, ValueError, RecursionError):
            text = f"<{type(value).__name__} that cannot be shown>"
        return shown(text)
    if isinstance(value, float) and not math.isfinite(value):
        return None  # NaN or infinity from a hostile JSON: shown as empty
    return value


def finite_number(value: Any) -> float | None:
    """A widget's number, or None when it is not a finite number (NaN, infinity, nothing)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None
