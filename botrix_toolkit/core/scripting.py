"""The Lua scripts of ``scripts/``: loaded once, called by SHA, errors translated.

Each ``scripts/<name>.lua`` is one atomic operation; ``_prelude.lua`` holds the
helpers they share, one per paragraph. A script names the helpers it calls with
BullMQ's directive, ``--- @include "publish"`` (a helper names those it calls
the same way), and gets just those put in front of it at load time. A Lua error
from the server names ``user_script:<line>`` of that assembled text: a
``LuaScript`` call (and ``translated_errors``, for a message naming the script's
SHA) turns it back into the file and line, ``claim_jobs.lua:68``.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import redis
from redis.client import Pipeline
from redis.exceptions import NoScriptError

from botrix_toolkit.core.clients import RAW, CommandTarget, RedisClient
from botrix_toolkit.core.errors import (
    AccessDeniedError,
    BotrixError,
    ScriptAssemblyError,
    ServerConnectionError,
    ServerTimeoutError,
    SlotMovingError,
    WrongKeyTypeError,
)
from botrix_toolkit.core.reconnect import is_permanent

logger = logging.getLogger(__name__)

SCRIPT_NAMES = (
    "add_jobs",
    "claim_jobs",
    "set_status",
    "requeue_failed",
    "recover_stalled",
    "renew_leases",
    "remove_orphans",
    "release_jobs",
    "queue_gauges",
    "read_job",
)


PRELUDE = "_prelude"

# The whole line, as BullMQ writes it: --- @include "name"
_INCLUDE = re.compile(r'--- @include "(\w+)"')
# What is meant as one, to refuse a misspelt directive rather than read it as a comment.
_INCLUDE_ATTEMPT = re.compile(r"\s*-{2,3}\s*@include\b")
_HELPER_DEFINITION = re.compile(r"^local function (\w+)\(", re.MULTILINE)


def _file_name(name: str) -> str:
    return f"{name}.lua"


def _read_script(name: str) -> str:
    return (resources.files(__package__) / "scripts" / _file_name(name)).read_text(encoding="utf-8")


@dataclass(frozen=True)
class Fragment:
    """Lines of one file (a script, or one helper of the prelude) and the helpers it includes.

    ``lines`` holds (line number in the file, text) without the include
    directives: what goes to the server.
    """

    file: str
    lines: tuple[tuple[int, str], ...]
    includes: tuple[str, ...]

    @property
    def code(self) -> str:
        return "\n".join(text for _, text in self.lines)


def parse_fragment(file: str, numbered_lines: Sequence[tuple[int, str]]) -> Fragment:
    """Lines of ``file`` (numbered from 1) split into code and include directives."""
    lines: list[tuple[int, str]] = []
    includes: list[str] = []
    for number, text in numbered_lines:
        if not _INCLUDE_ATTEMPT.match(text):
            lines.append((number, text))
            continue
        found = _INCLUDE.fullmatch(text.strip())
        if found is None:
            raise ScriptAssemblyError(f'{file}:{number}: write an include as --- @include "helper", not {text!r}')
        if found[1] in includes:
            raise ScriptAssemblyError(f"{file}:{number}: {found[1]!r} is included twice")
        includes.append(found[1])
    return Fragment(file, tuple(lines), tuple(includes))


@cache
def prelude_helpers() -> dict[str, Fragment]:
    """Each paragraph of the prelude that defines a helper, by the helper's name, in file order.

    A paragraph (lines between blank lines) defines at most one function,
    with whatever state it alone needs; one of only comments is skipped.
    """
    file = _file_name(PRELUDE)
    helpers: dict[str, Fragment] = {}
    paragraph: list[tuple[int, str]] = []
    numbered = list(enumerate(_read_script(PRELUDE).split("\n"), start=1))
    for number, text in [*numbered, (len(numbered) + 1, "")]:
        if text:
            paragraph.append((number, text))
            continue
        if paragraph:
            fragment = parse_fragment(file, paragraph)
            defined = _HELPER_DEFINITION.findall(fragment.code)
            if len(defined) > 1:
                raise ScriptAssemblyError(f"{file}:{paragraph[0][0]}: one helper per paragraph, found {defined}")
            if defined:
                helpers[defined[0]] = fragment
            paragraph = []
    return helpers


def script_fragment(name: str) -> Fragment:
    """A script's own lines and includes, as written in ``scripts/<name>.lua``."""
    return parse_fragment(_file_name(name), list(enumerate(_read_script(name).split("\n"), start=1)))


@dataclass(frozen=True)
class AssembledScript:
    """The text the server runs, and where each of its lines comes from (None: a separating blank line)."""

    source: str
    origins: tuple[tuple[str, int] | None, ...]

    def location(self, line: int) -> str:
        """``claim_jobs.lua:68`` for line ``line`` (from 1) of ``source``."""
        origin = self.origins[line - 1] if 0 < line <= len(self.origins) else None
        return f"{origin[0]}:{origin[1]}" if origin else f"line {line} of the assembled script"


@cache
def assemble(name: str) -> AssembledScript:
    """A script with the helpers it includes, and those they include, in front, in prelude order.

    Only those: the server runs a script's whole text on every call, and each
    helper defined costs it a closure (the prelude whole cost claim_jobs and
    set_status about a microsecond each).
    """
    return assemble_fragments(script_fragment(name), prelude_helpers())


def assemble_fragments(body: Fragment, helpers: dict[str, Fragment]) -> AssembledScript:
    """``body`` with the helpers it includes (and those they include) in front, in the order of ``helpers``."""
    wanted: set[str] = set()
    pending = [(body, helper) for helper in body.includes]
    while pending:
        includer, helper = pending.pop()
        if helper not in helpers:
            raise ScriptAssemblyError(
                f"{includer.file} includes {helper!r}, which the prelude does not define "
                f"(it defines {', '.join(helpers)})"
            )
        if helper not in wanted:
            wanted.add(helper)
            pending.extend((helpers[helper], more) for more in helpers[helper].includes)
    lines: list[str] = []
    origins: list[tuple[str, int] | None] = []
    for fragment in [helpers[helper] for helper in helpers if helper in wanted]:
        lines.extend(text for _, text in fragment.lines)
        origins.extend((fragment.file, number) for number, _ in fragment.lines)
        lines.append("")
        origins.append(None)
    lines.extend(text for _, text in body.lines)
    origins.extend((body.file, number) for number, _ in body.lines)
    return AssembledScript("\n".join(lines), tuple(origins))


def script_source(name: str) -> str:
    """The Lua source of one operation, as the server runs it: its helpers, then its own lines."""
    return assemble(name).source


@cache
def _scripts_by_sha() -> dict[str, AssembledScript]:
    assembled = [assemble(name) for name in SCRIPT_NAMES]
    return {hashlib.sha1(script.source.encode("utf-8")).hexdigest(): script for script in assembled}


# Redis 7 ends a script's error with "script: <sha>, on @user_script:<line>." (Valkey leaves
# the sha out of it), Redis 6 starts it with "Error running script (call to f_<sha>)", and
# redis-py's pipeline names the command, "EVALSHA <sha> ...".
_SHA = re.compile(r"\b(?:f_)?([0-9a-f]{40})\b")
_SCRIPT_LINE = re.compile(r"user_script:(\d+)")


def with_script_lines(message: str, script: AssembledScript | None = None) -> str:
    """A server's error message with each ``user_script:<line>`` as the file and line it comes from.

    The script is ``script``, else the one of ours whose SHA the message names;
    a message of neither is returned as it is.
    """
    if script is None:
        known = _scripts_by_sha()
        script = next((known[sha] for sha in _SHA.findall(message) if sha in known), None)
        if script is None:
            return message
    located = script
    return _SCRIPT_LINE.sub(lambda line: located.location(int(line[1])), message)


class LuaScript:
    """One script, called by SHA: ``script(keys=[...], args=[...], client=pipe)``.

    Leaner than redis-py's ``Script`` on the hot path (a single job's add or
    claim is one round trip, so a few microseconds of Python count); it keeps
    the ``sha`` and ``script`` attributes through which a redis-py pipeline
    loads its scripts before executing.
    """

    def __init__(self, client: RedisClient, name: str) -> None:
        self.name = name
        self._assembled = assemble(name)
        self.script = self._assembled.source
        self.sha = hashlib.sha1(self.script.encode("utf-8")).hexdigest()
        self._client = client
        # A decoding client is asked for the reply raw (clients.py): a script's
        # reply must never fail to be read after the script changed data. A
        # client that returns bytes is not: the option costs about a
        # microsecond per call, as redis-py hands it down through each layer.
        self._reply_options = RAW if client.get_encoder().decode_responses else {}

    def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = (), client: CommandTarget | None = None) -> Any:
        if client is None:
            target, options = self._client, self._reply_options  # never a pipeline: no isinstance check
        elif isinstance(client, Pipeline):
            # The pipeline loads it before it runs: it reads only .sha and .script, which a LuaScript has.
            client.scripts.add(self)  # type: ignore[arg-type]
            return client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args, **RAW)
        else:
            target, options = client, RAW
        try:
            try:
                return target.execute_command("EVALSHA", self.sha, len(keys), *keys, *args, **options)
            except NoScriptError:
                # A restarted or flushed server: load once, then run again.
                target.script_load(self.script)
                return target.execute_command("EVALSHA", self.sha, len(keys), *keys, *args, **options)
        except redis.exceptions.ResponseError as error:
            self.name_lines(error)
            raise

    def name_lines(self, error: redis.exceptions.ResponseError) -> None:
        """Rewrites an error of this script to name its lines in our files (Valkey's names no SHA to find them by)."""
        if error.args and isinstance(error.args[0], str):
            error.args = (with_script_lines(error.args[0], self._assembled), *error.args[1:])


class Scripts:
    """Every script of ``scripts/`` for one client: ``scripts.add_jobs(keys=..., args=...)``."""

    def __init__(self, client: RedisClient) -> None:
        for name in SCRIPT_NAMES:
            setattr(self, name, LuaScript(client, name))

    add_jobs: LuaScript
    claim_jobs: LuaScript
    set_status: LuaScript
    requeue_failed: LuaScript
    recover_stalled: LuaScript
    renew_leases: LuaScript
    remove_orphans: LuaScript
    release_jobs: LuaScript
    queue_gauges: LuaScript
    read_job: LuaScript


# A cluster node's answers while a slot moves: the command did not run there.
SLOT_MOVING_ERRORS = (redis.exceptions.MovedError, redis.exceptions.AskError, redis.exceptions.TryAgainError)

_WRONGTYPE_KEY = re.compile(r"WRONGTYPE key (.+?) holds a (\w+), expected a (\w+)")


class translated_errors:
    """Turns redis-py errors into BotrixErrors that name the server or the key.

    A class rather than a generator-based context manager: it wraps every
    operation, and this costs a fraction of the setup of a generator.
    """

    __slots__ = ("server", "keys")

    def __init__(self, server: str, keys: Sequence[str] = ()) -> None:
        self.server = server
        self.keys = keys

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        # Never suppresses an exception: it raises the translated one, or lets the original through.
        if exc is None or isinstance(exc, BotrixError) or not isinstance(exc, redis.exceptions.RedisError):
            return
        server = self.server
        if isinstance(exc, redis.exceptions.NoPermissionError):
            raise AccessDeniedError(f"{server} refused the command (permission): {exc}") from exc
        if isinstance(exc, redis.exceptions.ConnectionError) and is_permanent(exc):
            raise AccessDeniedError(f"{server} refused the connection: {exc}") from exc
        if isinstance(exc, redis.exceptions.TimeoutError):
            raise ServerTimeoutError(f"{server} did not answer in time: {exc}") from exc
        if isinstance(exc, redis.exceptions.ConnectionError):
            raise ServerConnectionError(f"cannot reach {server}: {exc}") from exc
        if isinstance(exc, SLOT_MOVING_ERRORS) or (
            isinstance(exc, redis.exceptions.ClusterError) and "TTL exhausted" in str(exc)
        ):
            # TTL exhausted: redis-py's cluster client followed redirects until it gave up.
            raise SlotMovingError(
                f"{server}: the queue's keys are being moved to another cluster node (resharding); "
                f"nothing was changed, retry shortly ({exc})"
            ) from exc
        if isinstance(exc, redis.exceptions.ResponseError):
            text = with_script_lines(str(exc))
            found = _WRONGTYPE_KEY.search(text)
            if found:
                key, actual, expected = found.groups()
                raise WrongKeyTypeError(f"key {key!r} holds a {actual}, expected a {expected}") from exc
            if "WRONGTYPE" in text:
                named = ", ".join(repr(k) for k in self.keys) or "a queue key"
                raise WrongKeyTypeError(f"{named}: {text}") from exc
            raise BotrixError(f"{server} refused the command: {text}") from exc


def as_text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
