"""``botrix bench``: throughput of the toolkit as ratios to raw baselines."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import redis
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from botrix_toolkit.cli.common import server_options
from botrix_toolkit.core.redaction import redact_url
from botrix_toolkit.server.connect import configured_url
from botrix_toolkit.server.embedded import throwaway_server

# The benchmarks (pandas, pyarrow) are imported where they run, so that every
# other `botrix` command starts without them.
if TYPE_CHECKING:
    from botrix_toolkit.bench.frames import FrameBenchmarkResult
    from botrix_toolkit.bench.history_view import HistoryViewBenchmark
    from botrix_toolkit.bench.queue import Comparison


def register(subparsers: argparse._SubParsersAction) -> None:
    bench = subparsers.add_parser(
        "bench", parents=[server_options("a fresh embedded server of its own")],
        help="measure throughput against raw redis-py baselines (ratios, same run)",
        description="Runs each toolkit operation and a raw redis-py baseline with the same "
        "effects on one server, in one run, and prints jobs per second and their ratio. "
        "Uses a key prefix of its own (botrix:bench:*) and deletes it afterwards. Without "
        "--redis-url or $BOTRIX_REDIS_URL it starts a fresh embedded server of its own and "
        "deletes it afterwards: the shared embedded server and its data are left alone.",
    )
    bench.add_argument("--jobs", type=int, default=2000, help="jobs for the one-by-one measurements")
    bench.add_argument("--bulk-jobs", type=int, default=30_000, help="jobs for the bulk measurements")
    bench.add_argument("--rounds", type=int, default=9,
                       help="interleaved rounds of the queue measurements; each rate is their median, each "
                            "ratio the median of the rounds' own ratios (many short rounds outvote a noisy moment)")
    bench.add_argument("--frame-jobs", type=int, default=1_000_000,
                       help="pending jobs for the frame measurement (filling takes about a minute per million)")
    bench.add_argument("--recorder-seconds", type=float, default=10.0,
                       help="seconds of flat-out publishing for the recorder measurement")
    bench.add_argument("--monitor-seconds", type=float, default=10.0,
                       help="seconds of flat-out publishing for the monitor measurement")
    bench.add_argument("--history-events", type=int, default=100_000_000,
                       help="events in the synthetic week of history for the history-view measurement "
                            "(written as per-minute rollups plus the last hour raw: a few minutes, ~100 MB)")
    bench.add_argument("--only", default="queue,frames,events",
                       help="comma-separated sections to run: queue, frames-1m (alias frames), events, monitor, "
                            "cluster, history-view "
                            "(cluster starts three local Valkey primaries unless --cluster-url is given; "
                            "history-view needs no server)")
    bench.add_argument("--cluster-url", default=None,
                       help="any node of a cluster for the cluster section (default: a local one)")
    bench.set_defaults(handler=run)


def comparisons_table(title: str, comparisons: list[Comparison]) -> Table:
    table = Table(title=title)
    for column in ("operation", "jobs/s", "baseline", "baseline jobs/s", "ratio", "rounds' range", "target", ""):
        table.add_column(column, justify="right" if column.endswith(("s", "ratio", "range", "target")) else "left")
    for c in comparisons:
        table.add_row(
            c.name, f"{c.toolkit_rate:,.0f}", c.baseline_name, f"{c.baseline_rate:,.0f}",
            f"{c.ratio:.2f}x", f"{min(c.round_ratios):.2f}-{max(c.round_ratios):.2f}",
            f">= {c.target_ratio:.2f}x", "ok" if c.meets_target else "BELOW",
        )
    return table


def frames_table(result: FrameBenchmarkResult) -> Table:
    from botrix_toolkit.bench.frames import TARGET_RATIO

    table = Table(title=f"pending_jobs_frame, {result.jobs:,} pending jobs, best of {len(result.raw_seconds)} each")
    for column in ("measure", "value", "rounds", "target"):
        table.add_column(column)
    best_raw, best_toolkit = min(result.raw_seconds), min(result.toolkit_seconds)
    table.add_row("lean raw read (ZRANGE + MGET + orjson + from_records + to_datetime)",
                  f"{best_raw:.2f} s ({result.jobs / best_raw:,.0f} jobs/s)",
                  ", ".join(f"{s:.2f}" for s in result.raw_seconds), "")
    table.add_row("pending_jobs_frame", f"{best_toolkit:.2f} s ({result.jobs / best_toolkit:,.0f} jobs/s)",
                  ", ".join(f"{s:.2f}" for s in result.toolkit_seconds), "")
    ratios = result.round_ratios
    table.add_row("time ratio to the lean read", f"{result.ratio:.2f}x",
                  f"{min(ratios):.2f}-{max(ratios):.2f}x",
                  f"<= {TARGET_RATIO:.2f}x " + ("ok" if result.meets_target else "ABOVE"))
    table.add_row("Go-style two GETs per job", f"{result.go_style_rate:,.0f} jobs/s", "", "")
    table.add_row("peak memory added", f"{result.toolkit_peak_mib:,.0f} MiB", "",
                  "< 1024 MiB at 1M " + ("ok" if result.toolkit_peak_mib < 1024 else "ABOVE"))
    return table


def recorder_table(result: dict) -> Table:
    table = Table(title=f"event capture, flat-out publisher for {result['seconds']:g} s")
    for column in ("subscriber", "sent", "received", "lost", "published/s", "received/s"):
        table.add_column(column, justify="left" if column == "subscriber" else "right")
    for name, key in (("redis-py PubSub.listen()", "pubsub_listen"), ("EventRecorder", "recorder"),
                      ("EventRecorder, one burst", "burst")):
        row = result[key]
        table.add_row(name, f"{row['sent']:,}", f"{row['received']:,}", f"{row['lost']:,}",
                      f"{row['publish_rate']:,.0f}", f"{row['receive_rate']:,.0f}")
    table.caption = (f"recorder received/published ratio {result['ratio']:.2f} "
                     "(target: 0 lost, >= 400,000 received/s)")
    return table


def monitor_table(results: dict[str, dict]) -> Table:
    """The monitor's rows: recording alone, with the metrics counting every event, and a backlog in one flush."""
    first = next(iter(results.values()))
    table = Table(title=f"botrix monitor, flat-out publisher for {first['seconds']:g} s, events to Parquet")
    for column in ("run", "sent", "received", "written", "lost", "published/s", "written/s", "counted/s",
                   "files", "MB per million, as flushed", "MB per million, compacted"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for name, result in results.items():
        counted = f"{result['count_rate']:,.0f}" if "count_rate" in result else ""
        table.add_row(name, f"{result['sent']:,}", f"{result['received']:,}", f"{result['written']:,}",
                      f"{result['lost']:,}", f"{result['publish_rate']:,.0f}", f"{result['write_rate']:,.0f}",
                      counted, f"{result['files']:,}", f"{result['bytes_per_million'] / 1e6:.1f}",
                      f"{result['compacted_bytes_per_million'] / 1e6:.1f}")
    ok = all(r["lost"] == 0 and r["write_rate"] >= 400_000 for r in results.values())
    table.caption = ("target: 0 lost, >= 400,000 written/s " + ("ok" if ok else "BELOW")
                     + "; counted/s: events the Prometheus counters took in, per second"
                     + "; the publisher sends the same 100,000 job lives round and round"
                     + "; backlog: everything recorded first, then written in one flush, the cores the monitor's own"
                     + " (written/s over that flush)")
    return table


def monitor_cpu_table(results: dict[str, dict]) -> Table:
    """Where the monitor runs' CPU went: a row per thread name (and the server), a column per run."""
    table = Table(title="botrix monitor: CPU per event written, µs")
    table.add_column("thread", justify="left")
    for name in results:
        table.add_column(name, justify="right")
    threads = dict.fromkeys(t for r in results.values() for t, us in r["cpu_us_per_event"].items() if us >= 0.005)
    for thread in threads:
        table.add_row(thread, *(f"{r['cpu_us_per_event'].get(thread, 0.0):.2f}" for r in results.values()))
    table.caption = "the monitor's threads by name (a pool's threads summed), and the server's own CPU (INFO cpu)"
    return table


def history_view_table(result: HistoryViewBenchmark) -> Table:
    from botrix_toolkit.bench.history_view import TARGET_MS as TARGET_HISTORY_MS

    table = Table(title=f"dashboard 7-day view over {result.events:,} events ({result.files:,} files, "
                        f"{result.disk_mb:,.0f} MB, built in {result.build_s:.0f} s)")
    for column in ("step", "median", "runs (ms)", "target"):
        table.add_column(column, justify="left" if column == "step" else "right")
    warm = result.data_ms[1:] or result.data_ms
    table.add_row("data step (range -> frames), a refresh", f"{result.median_ms:,.0f} ms",
                  ", ".join(f"{ms:,.0f}" for ms in warm),
                  f"< {TARGET_HISTORY_MS:,.0f} ms " + ("ok" if result.meets_target else "ABOVE"))
    table.add_row("data step, first read of every file", f"{result.cold_ms:,.0f} ms", "", "")
    figures = sorted(result.figures_ms)[len(result.figures_ms) // 2]
    table.add_row("the three figures", f"{figures:,.0f} ms", "", "")
    table.caption = (f"events the view counted: {result.view_events:,} of {result.events:,}; "
                     "the files as the monitor leaves them at 23:59 UTC: one per closed day, today's "
                     "closed hours in one, the last hour a file a minute")
    return table


def run(args: argparse.Namespace) -> int:
    from botrix_toolkit.bench.history_view import run_history_view_benchmark

    sections = {name.strip() for name in args.only.split(",")}
    console = Console(width=max(Console().width, 120))
    if "history-view" in sections:
        console.print(f"history view: building a week of history with {args.history_events:,} events ...")
        console.print(history_view_table(run_history_view_benchmark(args.history_events)))
        sections.discard("history-view")
        if not sections:
            return 0  # needs no server: none is started
    with _bench_server(args.redis_url) as (url, note):
        console.print(f"server: {redact_url(url)}{note}")
        _run_sections(args, sections, url, console)
    return 0


@contextlib.contextmanager
def _bench_server(url: str | None) -> Iterator[tuple[str, str]]:
    """The server to measure on, and a note on which it is: the one configured
    (``--redis-url``, ``$BOTRIX_REDIS_URL``), else a fresh embedded server of the
    benchmark's own. Not the shared embedded server: a million-job measurement
    would leave it a far larger append-only file and a heap the C library's
    allocator keeps at several times the data's size, and the figures would
    depend on that server's past (README, Performance)."""
    if configured := configured_url(url):
        yield configured, ""
        return
    with throwaway_server("botrix-bench-") as fresh:
        yield fresh, " (a fresh embedded server of its own, deleted afterwards)"


def _run_sections(args: argparse.Namespace, sections: set[str], url: str, console: Console) -> None:
    from botrix_toolkit.bench.cluster import run_cluster_benchmark
    from botrix_toolkit.bench.events import run_recorder_benchmark
    from botrix_toolkit.bench.frames import run_frame_benchmark
    from botrix_toolkit.bench.monitor import run_monitor_benchmark
    from botrix_toolkit.bench.queue import QueueBenchmark

    client = redis.Redis.from_url(url)
    try:
        if "queue" in sections:
            console.print(f"queue operations: {args.jobs:,} jobs one by one, {args.bulk_jobs:,} in bulk, "
                          f"median of {args.rounds} interleaved rounds ...")
            results = QueueBenchmark(client, args.jobs, args.bulk_jobs).run(args.rounds)
            console.print(comparisons_table("queue operations", results))
        if sections & {"frames", "frames-1m"}:
            with Progress(transient=True, console=console) as progress:
                task = progress.add_task(f"filling {args.frame_jobs:,} jobs", total=args.frame_jobs)
                result = run_frame_benchmark(
                    url, args.frame_jobs, lambda done, total: progress.update(task, completed=done)
                )
            console.print(frames_table(result))
        if "cluster" in sections:
            console.print("cluster: 1 queue vs 3 queues spread over the nodes ...")
            console.print(str(run_cluster_benchmark(args.cluster_url)))
        if "monitor" in sections:
            console.print(f"botrix monitor: {args.monitor_seconds:g} s of flat-out publishing ...")
            monitor_runs = {
                "recording": run_monitor_benchmark(url, args.monitor_seconds),
                "recording + metrics": run_monitor_benchmark(url, args.monitor_seconds, metrics=True),
                "backlog, one flush": run_monitor_benchmark(url, args.monitor_seconds, backlog=True),
            }
            console.print(monitor_table(monitor_runs))
            console.print(monitor_cpu_table(monitor_runs))
        if "events" in sections:
            console.print(f"event capture: {args.recorder_seconds:g} s per subscriber ...")
            console.print(recorder_table(run_recorder_benchmark(url, args.recorder_seconds)))
    finally:
        client.close()
