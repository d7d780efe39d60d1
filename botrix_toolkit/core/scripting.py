"""The Lua scripts of ``scripts/``: loaded once, called by SHA, errors translated.

Each ``scripts/<name>.lua`` is one atomic operation; ``_prelude.lua`` holds the
helpers they share, and each script gets the ones it uses put in front of it
at load time (plain concatenation: no include syntax to learn).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

import redis
from redis.client import Pipeline
from redis.exceptions import NoScriptError

from botrix_toolkit.core.errors import (
    BotrixError,
    ServerConnectionError,
    ServerTimeoutError,
    SlotMovingError,
    WrongKeyTypeError,
)

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
)


# A top-level definition of the prelude: "local function name(" or "local a, b".
_DEFINED_NAMES = re.compile(r"^local (?:function )?([\w, ]+)", re.MULTILINE)
# A Lua comment: a helper named only in a comment is not used.
_COMMENT = re.compile(r"--[^\n]*")


def _read_script(name: str) -> str:
    return (resources.files(__package__) / "scripts" / f"{name}.lua").read_text(encoding="utf-8")


@cache
def _prelude_helpers() -> list[tuple[frozenset[str], str]]:
    """Each paragraph of the prelude that defines something, with the names it defines."""
    helpers = []
    for paragraph in _read_script("_prelude").split("\n\n"):
        names = {name.strip() for found in _DEFINED_NAMES.findall(paragraph) for name in found.split(",")}
        if names:
            helpers.append((frozenset(names), paragraph.strip("\n")))
    return helpers


@cache
def script_source(name: str) -> str:
    """The Lua source of one operation, with the prelude helpers it uses in front.

    Only those: the server runs a script's whole text on every call, and each
    helper defined costs it a closure (the prelude whole cost claim_jobs and
    set_status about a microsecond each).
    """
    body = _read_script(name)
    helpers = _prelude_helpers()
    used, searched = set(), _COMMENT.sub("", body)
    # A helper may use another (put_back uses publish): look again until none is added.
    while True:
        added = {
            index for index, (names, _) in enumerate(helpers)
            if index not in used and any(re.search(rf"\b{name}\b", searched) for name in names)
        }
        if not added:
            break
        used |= added
        searched += _COMMENT.sub("", "".join(helpers[index][1] for index in added))
    in_prelude_order = [text for index, (_, text) in enumerate(helpers) if index in used]
    return "\n\n".join([*in_prelude_order, body])


class LuaScript:
    """One script, called by SHA: ``script(keys=[...], args=[...], client=pipe)``.

    Leaner than redis-py's ``Script`` on the hot path (a single job's add or
    claim is one round trip, so a few microseconds of Python count); it keeps
    the ``sha`` and ``script`` attributes through which a redis-py pipeline
    loads its scripts before executing.
    """

    def __init__(self, client: redis.Redis, name: str) -> None:
        self.name = name
        self.script = script_source(name)
        self.sha = hashlib.sha1(self.script.encode("utf-8")).hexdigest()
        self._client = client

    def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = (), client: Any = None) -> Any:
        if client is None:
            target = self._client  # never a pipeline: spares an ABC isinstance check per call
        elif isinstance(client, Pipeline):
            client.scripts.add(self)  # the pipeline loads it before it runs
            return client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
        else:
            target = client
        try:
            return target.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:
            # A restarted or flushed server: load once, then run again.
            target.script_load(self.script)
            return target.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)


class Scripts:
    """Every script of ``scripts/`` for one client: ``scripts.add_jobs(keys=..., args=...)``."""

    def __init__(self, client: redis.Redis) -> None:
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

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        if exc is None or isinstance(exc, BotrixError) or not isinstance(exc, redis.exceptions.RedisError):
            return False
        server = self.server
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
            text = str(exc)
            found = _WRONGTYPE_KEY.search(text)
            if found:
                key, actual, expected = found.groups()
                raise WrongKeyTypeError(f"key {key!r} holds a {actual}, expected a {expected}") from exc
            if "WRONGTYPE" in text:
                named = ", ".join(repr(k) for k in self.keys) or "a queue key"
                raise WrongKeyTypeError(f"{named}: {text}") from exc
            raise BotrixError(f"{server} refused the command: {text}") from exc
        return False


def as_text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
