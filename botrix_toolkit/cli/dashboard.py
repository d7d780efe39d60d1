"""``botrix dashboard``: run the Streamlit dashboard (``botrix_toolkit.dashboard``) on a queue.

The options reach the app through environment variables (BOTRIX_REDIS_URL,
BOTRIX_PREFIX, BOTRIX_DASHBOARD_EMBEDDED, BOTRIX_HISTORY_DIR), because ``streamlit run`` owns the
command line. The page binds to 127.0.0.1; any other address requires
BOTRIX_DASHBOARD_PASSWORD, which the page then asks for.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import redis

from botrix_toolkit.cli.common import queue_options
from botrix_toolkit.core.errors import InvalidInputError
from botrix_toolkit.core.redaction import redact_url
from botrix_toolkit.core.settings import (
    DASHBOARD_EMBEDDED_ENV,
    DASHBOARD_PASSWORD_ENV,
    HISTORY_DIR_ENV,
    PREFIX_ENV,
    URL_ENV,
    dashboard_password,
)
from botrix_toolkit.server.connect import resolve_url

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8501
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def app_path() -> Path:
    """The installed dashboard app (``botrix_toolkit/dashboard/app.py``), which Streamlit runs."""
    from importlib import resources

    return Path(str(resources.files("botrix_toolkit.dashboard") / "app.py"))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "dashboard",
        parents=[queue_options("several, comma-separated, give a queue picker and an all-queues view")],
        help="run the live dashboard in a browser (Streamlit)",
        description="Serve the live queue dashboard with Streamlit. It listens on 127.0.0.1 "
                    f"unless --host says otherwise; any other host requires {DASHBOARD_PASSWORD_ENV}, "
                    "and the page then asks for that password.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to listen on (default {DEFAULT_HOST}; others need "
                             f"{DASHBOARD_PASSWORD_ENV})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port to listen on (default {DEFAULT_PORT})")
    parser.add_argument("--history", metavar="DIR", default=os.environ.get(HISTORY_DIR_ENV) or None,
                        help="the history folder `botrix monitor --history` writes: the activity charts then "
                             "offer the last 5 minutes, 1 hour, 24 hours, 7 days or a custom range "
                             f"(default: ${HISTORY_DIR_ENV}; without it, live minutes only)")
    parser.set_defaults(handler=run)


def streamlit_command(host: str, port: int) -> list[str]:
    """The ``streamlit run`` command line for the dashboard."""
    return [
        sys.executable, "-m", "streamlit", "run", str(app_path()),
        "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "viewer",  # no "Deploy" button on a team's dashboard
        "--server.address", host,
        "--server.port", str(port),
    ]


def dashboard_environment(url: str, prefix: str, embedded: bool, history: str | None = None) -> dict[str, str]:
    """The process environment plus the app's settings."""
    env = dict(os.environ)
    env.update({URL_ENV: url, PREFIX_ENV: prefix, DASHBOARD_EMBEDDED_ENV: "1" if embedded else "0"})
    if history:
        env[HISTORY_DIR_ENV] = str(Path(history).expanduser().resolve())
    else:
        env.pop(HISTORY_DIR_ENV, None)
    return env


def check_exposure(host: str) -> None:
    """Refuse a non-loopback address unless a dashboard password is set; refuse a blank one."""
    password = dashboard_password()  # refuses a blank one, whatever the host
    if host not in LOOPBACK_HOSTS and password is None:
        raise InvalidInputError(
            f"--host {host} would expose the dashboard beyond this machine; set "
            f"{DASHBOARD_PASSWORD_ENV} to a password (the page will ask for it) or use --host 127.0.0.1"
        )


def server_problem(url: str, timeout_s: float = 3.0) -> str | None:
    """Why the server at ``url`` does not answer PING (password never named), or None when it does."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError) as exc:
        return redact_url(str(exc)).strip().rstrip(".") or type(exc).__name__
    return None


def run(args: argparse.Namespace) -> int:
    check_exposure(args.host)
    if not 0 < args.port < 65536:
        raise InvalidInputError(f"--port must be 1..65535; got {args.port}")
    url, embedded = resolve_url(args.redis_url)
    command = streamlit_command(args.host, args.port)
    print(f"botrix dashboard on http://{args.host}:{args.port} · server {redact_url(url)}"
          f"{' (embedded)' if embedded else ''} · prefix {args.prefix}"
          f" · history {args.history or 'none (live minutes only)'}", flush=True)
    problem = server_problem(url)
    if problem is not None:
        print(f"botrix dashboard: the server at {redact_url(url)} cannot be reached ({problem}); "
              "serving the page anyway: it retries on every refresh", file=sys.stderr, flush=True)
    if args.history and not Path(args.history).expanduser().is_dir():
        print(f"botrix dashboard: the history folder {args.history!r} does not exist (yet); the page says so "
              "and shows live minutes until a monitor writes it", file=sys.stderr, flush=True)
    logger.info("running %s", " ".join(command))
    # exec, not a child process: signals (Ctrl-C, SIGTERM from a supervisor)
    # reach Streamlit directly and no orphan is left behind
    os.execve(command[0], command, dashboard_environment(url, args.prefix, embedded, args.history))
    return 0  # pragma: no cover - execve does not return
