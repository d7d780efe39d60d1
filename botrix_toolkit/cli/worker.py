"""``botrix worker package.module:function``: run a Worker from the command line."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from botrix_toolkit.cli.common import queue_options
from botrix_toolkit.core.errors import InvalidInputError
from botrix_toolkit.core.worker import Handler, Worker
from botrix_toolkit.server.connect import connect


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "worker", parents=[queue_options()], help="run a handler function on the jobs of a queue",
        description="Take jobs from the queue and call HANDLER(job) on each: a returned value "
                    "is saved as the job's result, an exception fails the job (requeued while "
                    "retries remain). SIGTERM/Ctrl-C finishes the jobs held and stops; a second "
                    "one hands them back to the queue.",
    )
    parser.add_argument("handler_spec", metavar="HANDLER",
                        help="the function to call, as package.module:function "
                             "(the current directory is importable)")
    parser.add_argument("--concurrency", type=int, default=1,
                        help="handler calls running at once (threads; default 1)")
    parser.add_argument("--batch", type=int, default=1,
                        help="jobs claimed per round trip (default 1)")
    parser.add_argument("--lease-s", type=float, default=30.0,
                        help="lease kept alive on each held job, renewed every third of it "
                             "(default 30)")
    parser.add_argument("--max-retries", type=int, default=3,
                        help="requeues of a failing job before it fails for good (default 3)")
    parser.add_argument("--max-jobs", type=int, default=None, help="stop after this many jobs")
    parser.add_argument("--until-empty", action="store_true",
                        help="stop when the queue is empty and nothing is held")
    parser.set_defaults(handler=_run)


def load_handler(spec: str) -> Handler:
    """The function named by ``package.module:function`` (the cwd is put on sys.path)."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise InvalidInputError(f"handler must be package.module:function; got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidInputError(
            f"cannot import module {module_name!r} of handler {spec!r}: {exc}") from None
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise InvalidInputError(f"module {module_name!r} has no {attribute!r}") from None
    if not callable(target):
        raise InvalidInputError(f"handler {spec!r} is not callable")
    return target


def _run(args: argparse.Namespace) -> int:
    function = load_handler(args.handler_spec)
    q = connect(args.redis_url, prefix=args.prefix)
    try:
        worker = Worker(q, function, concurrency=args.concurrency, lease_s=args.lease_s,
                        batch=args.batch, max_retries=args.max_retries)
        stats = worker.run(max_jobs=args.max_jobs, until_empty=args.until_empty)
    finally:
        q.close()
    print(f"claimed {stats.claimed}, completed {stats.completed}, failed {stats.failed}, "
          f"requeued {stats.requeued}, returned {stats.returned}", flush=True)
    return 0
