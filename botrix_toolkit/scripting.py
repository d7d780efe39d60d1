"""The Lua scripts of ``scripts/``: loaded once, called by SHA, errors translated.

Each ``scripts/<name>.lua`` is one atomic operation; ``_prelude.lua`` holds the
helpers they share and is put in front of each at load time (plain
concatenation: no include syntax to learn).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator, Sequence
from functools import cache
from importlib import resources
from typing import Any

import redis
from redis.commands.core import Script

from .errors import (
    BotrixError,
    ServerConnectionError,
    ServerTimeoutError,
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


@cache
def script_source(name: str) -> str:
    """The Lua source of one operation, with the shared prelude in front."""
    folder = resources.files(__package__) / "scripts"
    prelude = (folder / "_prelude.lua").read_text(encoding="utf-8")
    return prelude + "\n" + (folder / f"{name}.lua").read_text(encoding="utf-8")


class Scripts:
    """Every script registered on one client; ``scripts.add_jobs(keys=..., args=...)``.

    redis-py's ``Script`` sends EVALSHA and loads the source once on NOSCRIPT,
    also inside a pipeline (``client=pipe``).
    """

    def __init__(self, client: redis.Redis) -> None:
        for name in SCRIPT_NAMES:
            setattr(self, name, client.register_script(script_source(name)))

    add_jobs: Script
    claim_jobs: Script
    set_status: Script
    requeue_failed: Script
    recover_stalled: Script
    renew_leases: Script
    remove_orphans: Script
    release_jobs: Script


_WRONGTYPE_KEY = re.compile(r"WRONGTYPE key (.+?) holds a (\w+), expected a (\w+)")


@contextlib.contextmanager
def translated_errors(server: str, keys: Sequence[str] = ()) -> Iterator[None]:
    """Turns redis-py errors into BotrixErrors that name the server or the key."""
    try:
        yield
    except BotrixError:
        raise
    except redis.exceptions.TimeoutError as exc:
        raise ServerTimeoutError(f"{server} did not answer in time: {exc}") from exc
    except redis.exceptions.ConnectionError as exc:
        raise ServerConnectionError(f"cannot reach {server}: {exc}") from exc
    except redis.exceptions.ResponseError as exc:
        text = str(exc)
        found = _WRONGTYPE_KEY.search(text)
        if found:
            key, actual, expected = found.groups()
            raise WrongKeyTypeError(
                f"key {key!r} holds a {actual}, expected a {expected}"
            ) from exc
        if "WRONGTYPE" in text:
            named = ", ".join(repr(k) for k in keys) or "a queue key"
            raise WrongKeyTypeError(f"{named}: {text}") from exc
        raise BotrixError(f"{server} refused the command: {text}") from exc


def as_text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
