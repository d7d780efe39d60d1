"""Servers whose acknowledged writes survive a SIGKILL, for the outage tests."""

from __future__ import annotations

import redis


def fsync_always(url: str) -> None:
    """appendfsync always: every write is on disk before the server answers it."""
    client = redis.Redis.from_url(url)
    try:
        client.config_set("appendfsync", "always")
    finally:
        client.close()
