"""Settings from the environment, and the resources one dashboard server shares.

The QueueService, the EventRecorder and the queue-depth history are
``st.cache_resource``: one per (server, prefix) for the whole Streamlit
process, shared by every browser tab, so the recorder keeps recording and the
depth chart keeps its past between page refreshes and tabs.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

import pandas as pd
import streamlit as st

from botrix_toolkit import QueueService
from botrix_toolkit.core.keys import DEFAULT_PREFIX
from botrix_toolkit.core.reconnect import ReconnectRetry
from botrix_toolkit.core.redaction import redact_url
from botrix_toolkit.core.settings import (
    DASHBOARD_EMBEDDED_ENV,
    HISTORY_DIR_ENV,
    PREFIX_ENV,
    URL_ENV,
    dashboard_password,
)
from botrix_toolkit.frames.events import EventRecorder
from botrix_toolkit.server.connect import resolve_url

logger = logging.getLogger(__name__)

# Enough for several minutes of a busy queue; older events drop off.
RECORDER_MAXLEN = 300_000
# A dashboard should say "unreachable" quickly, not hang a refresh: the next
# refresh tries again, so a restarting server is waited for only briefly.
SOCKET_TIMEOUT_S = 3.0
RECONNECT_WINDOW_S = 1.0
# Queue depth: at most one sample a second however many tabs refresh; an hour kept.
DEPTH_SAMPLE_INTERVAL_S = 1.0
DEPTH_HISTORY_LEN = 3600


@dataclass(frozen=True)
class Settings:
    """Where the dashboard connects and whether it asks for a password."""

    url: str | None  # None: resolve_url picks the embedded server
    prefix: str  # the queue shown
    password: str | None
    embedded: bool
    prefixes: tuple[str, ...] = ()  # every queue the user may pick (BOTRIX_PREFIX, comma-separated)
    history: str | None = None  # the monitor's history folder (BOTRIX_HISTORY_DIR), None when not given


def settings_from_env() -> Settings:
    """The settings of this page run, read from the environment each time.

    A password variable set but blank raises InvalidInputError (settings.py).
    """
    prefixes = tuple(p.strip() for p in os.environ.get(PREFIX_ENV, "").split(",") if p.strip())
    prefixes = prefixes or (DEFAULT_PREFIX,)
    return Settings(
        url=os.environ.get(URL_ENV, "").strip() or None,
        prefix=prefixes[0],
        password=dashboard_password(),
        embedded=os.environ.get(DASHBOARD_EMBEDDED_ENV) == "1",
        prefixes=prefixes,
        history=os.environ.get(HISTORY_DIR_ENV, "").strip() or None,
    )


@dataclass(frozen=True)
class Connection:
    """The queue service and how to describe its server (never with a password)."""

    q: QueueService
    display_url: str
    embedded: bool


@st.cache_resource(show_spinner=False)
def connection(url: str | None, prefix: str, embedded_hint: bool) -> Connection:
    """One QueueService per (url, prefix) for the whole dashboard process.

    Without a URL this starts (or finds) the embedded server, which may raise
    EmbeddedServerError; errors are not cached, so the next refresh retries.
    """
    resolved, embedded = resolve_url(url)
    q = QueueService.from_url(resolved, prefix=prefix, socket_timeout=SOCKET_TIMEOUT_S,
                              socket_connect_timeout=SOCKET_TIMEOUT_S,
                              retry=ReconnectRetry(RECONNECT_WINDOW_S))
    logger.info("dashboard connected to %s prefix %s", redact_url(resolved), prefix)
    return Connection(q, redact_url(resolved), embedded or embedded_hint)


@dataclass(frozen=True)
class LiveRecording:
    """The shared recorder and when it subscribed: it holds every event since then (until it drops
    the oldest past ``RECORDER_MAXLEN``)."""

    recorder: EventRecorder
    started_at: pd.Timestamp


@st.cache_resource(show_spinner=False)
def live_recording(url: str | None, prefix: str, embedded_hint: bool) -> LiveRecording:
    """One running EventRecorder per (url, prefix): ServerConnectionError when unreachable."""
    conn = connection(url, prefix, embedded_hint)
    recorder = EventRecorder(conn.q, maxlen=RECORDER_MAXLEN).start()
    # start() returns once subscribed: every event from now on is recorded
    return LiveRecording(recorder, pd.Timestamp.now(tz="UTC"))


def event_recorder(url: str | None, prefix: str, embedded_hint: bool) -> EventRecorder:
    """The shared running EventRecorder of (url, prefix): ServerConnectionError when unreachable."""
    return live_recording(url, prefix, embedded_hint).recorder


class DepthHistory:
    """The queue's counts over time, sampled by every tab's refreshes, read by every tab."""

    def __init__(self, maxlen: int = DEPTH_HISTORY_LEN) -> None:
        self._rows: deque[dict[str, Any]] = deque(maxlen=maxlen)
        self._lock = threading.Lock()  # tabs refresh from their own threads

    def record(self, taken_at: pd.Timestamp, stats: dict[str, int]) -> None:
        """Keeps the sample unless the last one is under DEPTH_SAMPLE_INTERVAL_S older."""
        with self._lock:
            if self._rows and (taken_at - self._rows[-1]["timestamp"]).total_seconds() < DEPTH_SAMPLE_INTERVAL_S:
                return
            self._rows.append({"timestamp": taken_at, **stats})

    def frame(self) -> pd.DataFrame:
        """The samples, oldest first: a timestamp column and get_queue_stats()' counts."""
        with self._lock:
            return pd.DataFrame(list(self._rows))


@st.cache_resource(show_spinner=False)
def depth_history(url: str | None, prefix: str, embedded_hint: bool) -> DepthHistory:
    """One DepthHistory per (url, prefix) for the whole dashboard process."""
    return DepthHistory()


def server_version(url: str | None, prefix: str, embedded_hint: bool) -> str | None:
    """``valkey 9.0.1`` / ``redis 7.2.4`` from INFO server, None when it cannot be read."""
    try:
        return _server_version(url, prefix, embedded_hint)
    except Exception as exc:
        logger.info("INFO server failed: %s", exc)
        return None


@st.cache_data(ttl=300, show_spinner=False)
def _server_version(url: str | None, prefix: str, embedded_hint: bool) -> str:
    # a failure raises, and st.cache_data caches only returned values
    info = connection(url, prefix, embedded_hint).q.redis.info("server")
    if "valkey_version" in info:
        return f"valkey {info['valkey_version']}"
    return f"{info.get('server_name') or 'redis'} {info.get('redis_version', '?')}"


def settings_key(settings: Settings) -> tuple[str | None, str, bool]:
    """The arguments that identify this page's shared resources."""
    return settings.url, settings.prefix, settings.embedded
