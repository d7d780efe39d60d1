"""The ``botrix`` command: argument parsing, logging setup and error display.

Each subcommand lives in its own module that exposes
``register(subparsers) -> None``; ``register`` adds one parser and sets its
``handler`` default to a function ``(argparse.Namespace) -> int`` (the exit
code). Add a module to ``COMMAND_MODULES`` to add a subcommand. A module that
fails to import is an error, never skipped silently.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from botrix_toolkit.core.errors import BotrixError
from botrix_toolkit.server.embedded import EmbeddedServer

logger = logging.getLogger(__name__)

# Modules that register further subcommands (dashboard, simulate, worker, bench).
COMMAND_MODULES: tuple[str, ...] = (
    "botrix_toolkit.cli.bench",
    "botrix_toolkit.cli.worker",
    "botrix_toolkit.cli.simulate",
    "botrix_toolkit.cli.dashboard",
    "botrix_toolkit.cli.monitor",
)

EXIT_OK = 0
EXIT_NOT_RUNNING = 1
EXIT_ERROR = 2


# -- botrix server ----------------------------------------------------------------

def register_server(subparsers: argparse._SubParsersAction) -> None:
    """``botrix server start|stop|status``: the embedded Valkey server."""
    server = subparsers.add_parser(
        "server", help="start, stop or inspect the embedded Valkey server",
        description="Manage the embedded Valkey server that the toolkit uses when "
                    "no URL is given (BOTRIX_REDIS_URL unset).",
    )
    actions = server.add_subparsers(dest="action", required=True, metavar="{start,stop,status}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir", type=Path, default=None,
        help="directory of the server's data, log and state file "
             "(default: $BOTRIX_HOME, else $XDG_DATA_HOME/botrix, else ~/.local/share/botrix)",
    )

    start = actions.add_parser("start", parents=[common],
                               help="start the server (or find the running one) and print its URL")
    start.add_argument("--port", type=int, default=None,
                       help="port on 127.0.0.1 (default: 6390 when free, else any free port)")
    start.set_defaults(handler=_server_start)

    stop = actions.add_parser("stop", parents=[common], help="stop the server")
    stop.set_defaults(handler=_server_stop)

    status = actions.add_parser("status", parents=[common],
                                help="show URL, pid, version and data dir; exit 1 when not running")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(handler=_server_status)


def _server_start(args: argparse.Namespace) -> int:
    server = EmbeddedServer(data_dir=args.data_dir, port=args.port)
    print(server.start())
    return EXIT_OK


def _server_stop(args: argparse.Namespace) -> int:
    server = EmbeddedServer(data_dir=args.data_dir)
    if server.stop():
        print(f"stopped the server of {server.data_dir}")
    else:
        print(f"no server running for {server.data_dir}")
    return EXIT_OK


def _server_status(args: argparse.Namespace) -> int:
    status = EmbeddedServer(data_dir=args.data_dir).status()
    if args.json:
        print(json.dumps(status))
    elif status["running"]:
        print(f"running   yes\n"
              f"url       {status['url']}\n"
              f"pid       {status['pid']}\n"
              f"version   {status['version']}\n"
              f"data dir  {status['data_dir']}")
    else:
        print(f"running   no\ndata dir  {status['data_dir']}")
    return EXIT_OK if status["running"] else EXIT_NOT_RUNNING


# -- the command --------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    """The ``botrix`` parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="botrix", description="Inspect, load-test and watch the botrix job queue.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log more (-v: info, -vv: debug); logs go to stderr")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    register_server(subparsers)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def configure_logging(verbosity: int) -> None:
    """Send log records to stderr; the library itself never adds handlers."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    logging.basicConfig(
        level=level, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if verbosity < 3:
        # redis-py's debug lines (retries, handshakes) drown ours
        logging.getLogger("redis").setLevel(max(level, logging.INFO))


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``botrix`` with ``argv`` (default: the process arguments); return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    try:
        return int(args.handler(args))
    except BotrixError as exc:
        # one readable line; further lines (a server log tail) only with -v
        first, _, details = str(exc).partition("\n")
        print(f"botrix: error: {first}", file=sys.stderr)
        if details and args.verbose:
            print(details, file=sys.stderr)
        elif details:
            print("botrix: (rerun with -v for details)", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("botrix: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
