"""The Lua scripts: each loads, names the helpers it calls, and its errors point at its own lines."""

from __future__ import annotations

import hashlib
import re

import pytest
import redis

from botrix_toolkit.core.errors import BotrixError, ScriptAssemblyError
from botrix_toolkit.core.queue import QueueService
from botrix_toolkit.core.scripting import (
    PRELUDE,
    SCRIPT_NAMES,
    Scripts,
    assemble,
    assemble_fragments,
    parse_fragment,
    prelude_helpers,
    script_fragment,
    script_source,
    translated_errors,
    with_script_lines,
)

SCRIPTS_DIR = "botrix_toolkit/core/scripts"


def called_helpers(code: str) -> set[str]:
    """The prelude helpers that Lua code calls (comments do not count)."""
    code = re.sub(r"--[^\n]*", "", code)
    return {name for name in prelude_helpers() if re.search(rf"\b{name}\s*\(", code)}


def file_line(file: str, text: str) -> int:
    """The line number (from 1) of the one line of ``scripts/<file>`` that contains ``text``."""
    with open(f"{SCRIPTS_DIR}/{file}", encoding="utf-8") as lua:
        found = [number for number, line in enumerate(lua, start=1) if text in line]
    assert len(found) == 1, f"{text!r} is on lines {found} of {file}"
    return found[0]


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_each_script_loads_with_its_header_first(redis_client: redis.Redis, name: str) -> None:
    source = script_source(name)
    assert redis_client.script_load(source)
    body_start = source.index(f"-- {name}: ")
    assert "KEYS[1]" in source[body_start:], "keys come in through KEYS"
    assert "@include" not in source, "the directives are resolved, not sent"


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_a_script_includes_every_helper_it_calls_and_only_those(name: str) -> None:
    fragment = script_fragment(name)
    assert set(fragment.includes) == called_helpers(fragment.code)


@pytest.mark.parametrize("helper", list(prelude_helpers()))
def test_a_helper_includes_every_other_helper_it_calls_and_only_those(helper: str) -> None:
    fragment = prelude_helpers()[helper]
    assert set(fragment.includes) == called_helpers(fragment.code) - {helper}


def defined_helpers(name: str) -> set[str]:
    source = script_source(name)
    prelude = source[: source.index(f"-- {name}: ")]
    return set(re.findall(r"^local function (\w+)", prelude, re.MULTILINE))


def test_a_script_gets_the_helpers_it_includes_and_those_they_include() -> None:
    # put_back includes publish and priority_field, which release_jobs does not call itself
    assert "publish" not in script_fragment("release_jobs").includes
    assert {"put_back", "publish", "priority_field", "stored_priority"} <= defined_helpers("release_jobs")
    # each helper left out spares the server a closure on every call
    assert defined_helpers("claim_jobs") == set(script_fragment("claim_jobs").includes)
    assert defined_helpers("renew_leases") == {"refuse_type", "expect_type", "server_time"}


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_each_line_sent_maps_back_to_the_same_line_of_its_file(name: str) -> None:
    assembled = assemble(name)
    files = {}
    for file in {f"{name}.lua", f"{PRELUDE}.lua"}:
        with open(f"{SCRIPTS_DIR}/{file}", encoding="utf-8") as lua:
            files[file] = lua.read().split("\n")
    sent = assembled.source.split("\n")
    assert len(sent) == len(assembled.origins)
    for text, origin in zip(sent, assembled.origins, strict=True):
        if origin is None:
            assert text == "", "only the blank lines between helpers come from no file"
        else:
            file, line = origin
            assert files[file][line - 1] == text
    assert assembled.origins[-1] == (f"{name}.lua", len(files[f"{name}.lua"]))


def test_an_error_in_a_script_names_its_file_and_line(redis_client: redis.Redis, key_prefix: str) -> None:
    # A count that is not a number fails the loop's arithmetic, inside the script itself.
    keys = [f"{key_prefix}:queue", f"{key_prefix}:processing", f"{key_prefix}:leases"]
    args = [f"{key_prefix}:data:", f"{key_prefix}:status:", "many", 60, f"{key_prefix}:updates", 10]
    with pytest.raises(BotrixError) as raised, translated_errors("the test server", keys):
        Scripts(redis_client).claim_jobs(keys=keys, args=args)
    line = file_line("claim_jobs.lua", "while #claimed < 2 * wanted")
    assert f"claim_jobs.lua:{line}:" in str(raised.value)
    assert "user_script" not in str(raised.value)


def test_an_error_in_a_helper_names_the_prelude_line(redis_client: redis.Redis, key_prefix: str) -> None:
    queue = f"{key_prefix}:queue"
    redis_client.set(queue, "not a sorted set")
    try:
        with pytest.raises(redis.ResponseError) as raised:
            Scripts(redis_client).remove_orphans(keys=[queue, f"{key_prefix}:data:1"], args=["updates", "1"])
    finally:
        redis_client.delete(queue)
    message = with_script_lines(str(raised.value))
    assert message.startswith(f"WRONGTYPE key {queue} holds a string, expected a zset")
    assert f"{PRELUDE}.lua:{file_line(f'{PRELUDE}.lua', 'error({err = ')}" in message


def test_redis_6_error_messages_are_mapped_too() -> None:
    assembled = assemble("claim_jobs")
    sha = hashlib.sha1(assembled.source.encode("utf-8")).hexdigest()
    last = len(assembled.origins)
    message = f"Error running script (call to f_{sha}): @user_script:{last}: user_script:{last}: boom"
    assert with_script_lines(message).count(f"claim_jobs.lua:{assembled.origins[-1][1]}") == 2


def test_a_message_of_another_script_is_left_alone() -> None:
    message = "user_script:3: boom script: " + "0" * 40 + ", on @user_script:3."
    assert with_script_lines(message) == message


def lines_of(text: str) -> list[tuple[int, str]]:
    return list(enumerate(text.split("\n"), start=1))


def test_an_unknown_include_is_refused_naming_the_file() -> None:
    body = parse_fragment("mine.lua", lines_of('-- mine: test\n--- @include "no_such_helper"\nreturn 1'))
    with pytest.raises(ScriptAssemblyError, match=r"mine.lua includes 'no_such_helper'"):
        assemble_fragments(body, prelude_helpers())


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('--- @include "publish"\n--- @include "publish"', r"mine.lua:2: 'publish' is included twice"),
        ("--- @include publish", r"mine.lua:1: write an include as"),
        ('-- @include "publish"', r"mine.lua:1: write an include as"),
    ],
)
def test_a_malformed_include_is_refused_with_its_line(text: str, problem: str) -> None:
    with pytest.raises(ScriptAssemblyError, match=problem):
        parse_fragment("mine.lua", lines_of(text))


def test_a_script_error_names_its_file_and_line_on_the_packed_path_too(queue: QueueService) -> None:
    # The claim of test_an_error_in_a_script_names_its_file_and_line, sent pre-packed as the queue sends scripts.
    keys = queue.keys
    script_keys = [keys.queue, keys.processing, keys.leases]
    args = [keys.data_prefix, keys.status_prefix, "many", 60, keys.updates, 10]
    assert queue._packed.usable
    with pytest.raises(BotrixError) as raised, translated_errors("the test server", script_keys):
        queue._call_script(queue._scripts.claim_jobs, script_keys, args)
    line = file_line("claim_jobs.lua", "while #claimed < 2 * wanted")
    assert f"claim_jobs.lua:{line}:" in str(raised.value)
    assert "user_script" not in str(raised.value)
