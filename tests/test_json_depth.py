"""The nesting check run on raw JSON text before it is parsed (core/json_depth.py)."""

from __future__ import annotations

import json

import pytest

from botrix_toolkit.core.json_depth import MAX_JSON_DEPTH, nests_too_deep


def nested(depth: int, kinds: str = "[{") -> str:
    """JSON text ``depth`` containers deep, alternating arrays and objects."""
    text = "1"
    for level in range(depth):
        text = f"[{text}]" if kinds[level % len(kinds)] == "[" else f'{{"k": {text}}}'
    return text


@pytest.mark.parametrize("kinds", ["[", "{", "[{"])
def test_the_limit_is_inclusive_for_arrays_and_objects(kinds: str) -> None:
    at_limit, over = nested(MAX_JSON_DEPTH, kinds), nested(MAX_JSON_DEPTH + 1, kinds)
    assert json.loads(at_limit) is not None
    assert not nests_too_deep(at_limit) and not nests_too_deep(at_limit.encode())
    assert nests_too_deep(over) and nests_too_deep(over.encode())


def test_many_shallow_containers_are_not_deep() -> None:
    wide = json.dumps({"rows": [{"a": [1, 2], "b": {"c": []}} for _ in range(5000)]})
    assert not nests_too_deep(wide)
    assert not nests_too_deep(json.dumps([[[]] * 100] * 100))


def test_brackets_inside_strings_do_not_count() -> None:
    text = json.dumps({"open": "[" * 1000, "close": "]" * 500 + "{", "quote": '\\"[[[' * 50,
                       "list": nested(MAX_JSON_DEPTH - 1)})
    assert not nests_too_deep(text)
    assert nests_too_deep(json.dumps({"s": "]]]" * 30, "v": json.loads(nested(MAX_JSON_DEPTH))}))


def test_the_poison_of_a_hundred_thousand_brackets_is_deep() -> None:
    assert nests_too_deep(b"[" * 100_000 + b"]" * 100_000)
    assert nests_too_deep("[" * 100_000)  # not even JSON: still refused before parsing


def test_a_smaller_limit_can_be_asked_for() -> None:
    assert nests_too_deep(nested(3), limit=2) and not nests_too_deep(nested(2), limit=2)
