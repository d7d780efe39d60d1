"""``botrix monitor``: the always-on service that keeps queues' event history on disk.

Runs a ``MonitorService`` until SIGTERM or SIGINT, then flushes everything
and exits 0. Logs one line on start (what it records, where, and the metrics
URL), and one per gap and per compaction.

Metrics: with ``--metrics-port`` the module ``botrix_toolkit.monitor.metrics``
is asked to serve them, through its ``start_metrics(service, host, port) -> url``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import signal
import threading
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botrix_toolkit.core.errors import InvalidInputError
from botrix_toolkit.core.keys import DEFAULT_PREFIX
from botrix_toolkit.core.redaction import redact_url
from botrix_toolkit.server.connect import resolve_url

if TYPE_CHECKING:  # imported where it runs: other `botrix` commands start without pyarrow
    from botrix_toolkit.monitor.service import MonitorService

logger = logging.getLogger(__name__)

METRICS_MODULE = "botrix_toolkit.monitor.metrics"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``12h``, ``7d``, ``2w`` -> timedelta; InvalidInputError naming the text otherwise."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text or "")
    if not match or float(match.group(1)) <= 0:
        raise InvalidInputError(f"--retain {text!r}: expected a positive number and a unit s, m, h, d or w "
                                "(e.g. 7d)")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "monitor", help="record every event of the queues into a Parquet history folder, as a service",
        description="Subscribes to each queue's updates channel and appends every event to a Parquet "
                    "dataset in --history (partitioned by queue, date and hour), flushed every --flush-s "
                    "seconds. SIGTERM or SIGINT flush everything and exit 0.",
    )
    parser.add_argument("--redis-url", default=None,
                        help="server URL (default: $BOTRIX_REDIS_URL, else the embedded server)")
    parser.add_argument("--prefix", default=DEFAULT_PREFIX,
                        help=f"queue key prefix (default {DEFAULT_PREFIX}); several, comma-separated")
    parser.add_argument("--history", required=True, type=Path, help="folder of the history dataset")
    parser.add_argument("--flush-s", type=float, default=1.0,
                        help="seconds between flushes to disk (default 1): a SIGKILL loses at most this")
    parser.add_argument("--retain", default=None,
                        help="delete partitions older than this (e.g. 7d, 12h; default: keep everything)")
    parser.add_argument("--metrics-port", type=int, default=None,
                        help="serve Prometheus metrics on this port (GET /metrics)")
    parser.add_argument("--metrics-host", default="127.0.0.1", help="address of the metrics server")
    parser.add_argument("--compact-every-s", type=float, default=60.0,
                        help="seconds between compaction and retention passes (default 60)")
    parser.set_defaults(handler=run)


def _start_metrics(service: MonitorService, host: str, port: int) -> str:
    try:
        module = importlib.import_module(METRICS_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != METRICS_MODULE:
            raise
        raise InvalidInputError(f"--metrics-port: this build has no Prometheus metrics ({METRICS_MODULE} "
                                "is not installed); run without --metrics-port") from exc
    start: Any = getattr(module, "start_metrics", None)
    if start is None:
        raise InvalidInputError(f"--metrics-port: {METRICS_MODULE} has no start_metrics(service, host, port)")
    return str(start(service, host, port))


def run(args: argparse.Namespace) -> int:
    from botrix_toolkit.monitor.service import MonitorService

    prefixes = [p.strip() for p in args.prefix.split(",") if p.strip()]
    if not prefixes:
        raise InvalidInputError(f"--prefix {args.prefix!r}: no queue prefix given")
    if not args.flush_s > 0:
        raise InvalidInputError(f"--flush-s {args.flush_s!r}: expected a positive number of seconds")
    retain = parse_duration(args.retain) if args.retain is not None else None
    # The service's own lines (start, gaps, compactions) show without -v.
    logging.getLogger("botrix_toolkit.monitor").setLevel(min(logging.INFO, logging.getLogger().level or 99))
    logging.getLogger(__name__).setLevel(logging.INFO)
    url, _ = resolve_url(args.redis_url)
    service = MonitorService(url, prefixes, args.history, flush_s=args.flush_s, retain=retain,
                             maintenance_s=args.compact_every_s)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        logger.info("received %s: flushing and stopping", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    service.start()
    try:
        metrics = _start_metrics(service, args.metrics_host, args.metrics_port) \
            if args.metrics_port is not None else None
        logger.info("botrix monitor: recording %s on %s into %s, flushed every %g s%s%s",
                    ", ".join(prefixes), redact_url(url), args.history.resolve(), args.flush_s,
                    f", keeping {args.retain}" if retain else ", keeping everything",
                    f"; metrics at {metrics}" if metrics else "; no metrics (--metrics-port not given)")
        while not stop.wait(0.5):
            pass
    finally:
        service.stop()
    health = service.health()
    logger.info("botrix monitor stopped: %d events written, %d gaps, %d malformed",
                health["events_written"], health["gaps"], health["malformed"])
    return 0
