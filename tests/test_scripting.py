"""The Lua scripts: each one loads, carries its header, and gets just the prelude helpers it uses."""

from __future__ import annotations

import re

import pytest
import redis

from botrix_toolkit.core.scripting import SCRIPT_NAMES, script_source


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_each_script_loads_with_its_header_first(redis_client: redis.Redis, name: str) -> None:
    source = script_source(name)
    assert redis_client.script_load(source)
    body_start = source.index(f"-- {name}: ")
    assert "KEYS[1]" in source[body_start:], "keys come in through KEYS"


def defined_helpers(name: str) -> set[str]:
    source = script_source(name)
    prelude = source[: source.index(f"-- {name}: ")]
    return set(re.findall(r"^local function (\w+)", prelude, re.MULTILINE))


def test_a_script_gets_the_helpers_it_uses_and_those_they_use() -> None:
    # put_back calls publish and priority_field, which recover_stalled does not name itself
    assert {"put_back", "publish", "priority_field", "stored_priority"} <= defined_helpers("recover_stalled")
    # each unused helper costs the server a closure on every call
    assert defined_helpers("claim_jobs").isdisjoint({"put_back", "stored_priority", "expect_type"})
    assert defined_helpers("renew_leases") == {"refuse_type", "expect_type", "server_time"}
