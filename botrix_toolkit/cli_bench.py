"""``botrix bench``: throughput of the toolkit as ratios to raw baselines."""

from __future__ import annotations

import argparse

import redis
from rich.console import Console
from rich.table import Table

from .bench import Comparison, QueueBenchmark
from .server import redact_url, resolve_url


def register(subparsers: argparse._SubParsersAction) -> None:
    bench = subparsers.add_parser(
        "bench",
        help="measure throughput against raw redis-py baselines (ratios, same run)",
        description="Runs each toolkit operation and a raw redis-py baseline with the same "
        "effects on one server, in one run, and prints jobs per second and their ratio. "
        "Uses a key prefix of its own (botrix:bench:*) and deletes it afterwards.",
    )
    bench.add_argument("--redis-url", default=None, help="server (default: BOTRIX_REDIS_URL, else the embedded one)")
    bench.add_argument("--jobs", type=int, default=3000, help="jobs for the one-by-one measurements")
    bench.add_argument("--bulk-jobs", type=int, default=30_000, help="jobs for the bulk measurements")
    bench.set_defaults(handler=run)


def comparisons_table(title: str, comparisons: list[Comparison]) -> Table:
    table = Table(title=title)
    for column in ("operation", "jobs/s", "baseline", "baseline jobs/s", "ratio", "target", ""):
        table.add_column(column, justify="right" if column.endswith(("s", "ratio", "target")) else "left")
    for c in comparisons:
        table.add_row(
            c.name, f"{c.toolkit_rate:,.0f}", c.baseline_name, f"{c.baseline_rate:,.0f}",
            f"{c.ratio:.2f}x", f">= {c.target_ratio:.2f}x", "ok" if c.meets_target else "BELOW",
        )
    return table


def run(args: argparse.Namespace) -> int:
    url, embedded = resolve_url(args.redis_url)
    console = Console()
    console.print(f"server: {redact_url(url)}{' (embedded)' if embedded else ''}")
    client = redis.Redis.from_url(url)
    try:
        console.print(f"queue operations: {args.jobs:,} jobs one by one, {args.bulk_jobs:,} in bulk ...")
        results = QueueBenchmark(client, args.jobs, args.bulk_jobs).run()
        console.print(comparisons_table("queue operations", results))
    finally:
        client.close()
    return 0
