"""Checks of a caller's numeric arguments, with one wording for every class that takes them.

Each returns the value as the type it is used as, or raises InvalidInputError
(a ValueError) naming the argument, what was expected and what was given. A
bool is refused wherever a number is wanted: ``True`` would pass as 1.
"""

from __future__ import annotations

from botrix_toolkit.core.errors import InvalidInputError


def whole_number(name: str, value: object, minimum: int) -> int:
    """``value`` when it is an integer of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidInputError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return value


def seconds(name: str, value: object, *, zero_allowed: bool = False) -> float:
    """``value`` as a float, when it is a number of seconds above 0 (or at least 0 with ``zero_allowed``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
        value >= 0 if zero_allowed else value > 0
    ):
        bound = ">= 0" if zero_allowed else "> 0"
        raise InvalidInputError(f"{name} must be a number of seconds {bound}; got {value!r}")
    return float(value)
