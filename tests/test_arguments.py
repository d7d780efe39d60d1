"""The numeric argument checks every class shares (core/arguments.py)."""

from __future__ import annotations

import math

import pytest

from botrix_toolkit.core import arguments
from botrix_toolkit.core.errors import BotrixError, InvalidInputError


@pytest.mark.parametrize("value", [1, 7, 10**12])
def test_a_whole_number_at_least_the_minimum_is_returned(value: int) -> None:
    assert arguments.whole_number("batch", value, 1) == value


@pytest.mark.parametrize("value", [0, -3, True, 1.0, "2", None])
def test_anything_else_is_refused_naming_the_argument_the_bound_and_the_value(value: object) -> None:
    with pytest.raises(InvalidInputError) as caught:
        arguments.whole_number("batch", value, 1)
    assert str(caught.value) == f"batch must be an integer >= 1; got {value!r}"
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, BotrixError)


def test_zero_passes_where_it_is_the_minimum() -> None:
    assert arguments.whole_number("max_retries", 0, 0) == 0


@pytest.mark.parametrize("value", [0.001, 2, 30.5])
def test_seconds_above_zero_come_back_as_a_float(value: float) -> None:
    found = arguments.seconds("lease_s", value)
    assert found == value and type(found) is float


@pytest.mark.parametrize("value", [0, -1, -0.5, math.nan, True, "5", None])
def test_seconds_not_above_zero_are_refused(value: object) -> None:
    with pytest.raises(InvalidInputError, match=r"^lease_s must be a number of seconds > 0; got "):
        arguments.seconds("lease_s", value)


def test_zero_seconds_pass_where_allowed_and_a_negative_never() -> None:
    assert arguments.seconds("timeout_s", 0, zero_allowed=True) == 0.0
    with pytest.raises(InvalidInputError, match=r"^timeout_s must be a number of seconds >= 0; got -1$"):
        arguments.seconds("timeout_s", -1, zero_allowed=True)
