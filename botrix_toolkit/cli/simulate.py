"""``botrix simulate``: run a load scenario (or ``--max``) and print its summary.

Every Scenario field is also an option (``--rate 500``, ``--rate-shape step``,
``--priority-mix high=10,normal=60,low=30``, ``--no-restart-crashed``...),
applied over the scenario file's values.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from botrix_toolkit.cli.common import queue_options
from botrix_toolkit.core.errors import BotrixError
from botrix_toolkit.sim.scenarios import SCENARIO_DIR, Scenario, parse_priority_mix

# Scenario fields that get no option of their own (name has --name, set below).
_NOT_OPTIONS = {"description"}
EXIT_LOST = 1
# The server was unreachable at the end: the conservation check could not run.
EXIT_UNCHECKED = 3
DEFAULT_SCENARIO = "steady"


def register(subparsers: argparse._SubParsersAction) -> None:
    available = ", ".join(sorted(p.stem for p in SCENARIO_DIR.glob("*.toml")))
    parser = subparsers.add_parser(
        "simulate",
        parents=[queue_options("the dashboard shows the default; use another on a queue that real "
                               "workers serve")],
        help="run a load simulation (producers, worker processes, crashes)", add_help=False,
        description="Run producers and worker processes against the queue, show live progress, "
                    "then print throughput, latency by priority and a conservation check, and "
                    "save the events, stats and summary to $BOTRIX_HOME/runs/<name>/. "
                    f"Scenarios shipped: {available}.",
    )
    parser.add_argument("-h", "--help", action=_ScenarioHelp,
                        help="show this help, with the values of the scenario named before it "
                             f"(`botrix simulate burst --help`; default {DEFAULT_SCENARIO}), and exit")
    parser.add_argument("scenario", nargs="?", default=DEFAULT_SCENARIO,
                        help="a shipped scenario (listed above) or the path of a TOML file "
                             "(default: steady)")
    parser.add_argument("--out", type=Path, default=None,
                        help="directory for events.parquet, stats.parquet, summary.json "
                             "(default: $BOTRIX_HOME/runs/<name>)")
    parser.add_argument("--no-save", action="store_true", help="do not save the run")
    parser.add_argument("--quiet", "-q", action="store_true", help="no live display")
    group = parser.add_argument_group("--max", "highest sustained end-to-end throughput")
    group.add_argument("--max", action="store_true",
                       help="measure the highest end-to-end jobs/s with --workers worker processes "
                            "over batch sizes 100, 500, 1000 (or --batch), beside a raw "
                            "redis-py baseline")
    group.add_argument("--max-seconds", type=float, default=5.0,
                       help="length of each --max measurement, after 1 s of warm-up (default 5)")
    options = parser.add_argument_group(
        "scenario fields", "each overrides the scenario file's value, shown in brackets")
    for spec in dataclasses.fields(Scenario):
        if spec.name not in _NOT_OPTIONS:
            _add_field_option(options, spec)
    parser.set_defaults(handler=_run)


def _add_field_option(group: argparse._ArgumentGroup, spec: dataclasses.Field) -> None:
    flag = "--" + spec.name.replace("_", "-")
    kind = str(spec.type)
    if spec.name == "priority_mix":
        group.add_argument(flag, type=parse_priority_mix, default=None, dest=spec.name,
                           help="weights, e.g. high=10,normal=60,low=30")
    elif kind.startswith("bool"):
        group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                           dest=spec.name, help=spec.name.replace("_", " "))
    else:
        convert = int if kind.startswith("int") else float if kind.startswith("float") else str
        group.add_argument(flag, type=convert, default=None, dest=spec.name,
                           help=spec.name.replace("_", " "))


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, dict):
        return ",".join(f"{level}={weight:g}" for level, weight in value.items())
    return f"{value:g}" if isinstance(value, float) else str(value)


class _ScenarioHelp(argparse.Action):
    """``--help`` that shows each field as the chosen scenario sets it, not the built-in defaults.

    The scenario is the one named before ``--help`` (argparse has read it by
    then), else the default one.
    """

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS,
                 default: Any = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        name = getattr(namespace, "scenario", None) or DEFAULT_SCENARIO
        try:
            values_of = Scenario.load(name).to_dict()
        except BotrixError as exc:
            parser.error(str(exc))
        for action in parser._actions:
            if action.dest in values_of and action.help is not None:
                action.help = f"{action.help.split(' [')[0]} [{name}: {_shown(values_of[action.dest])}]"
        parser.print_help()
        parser.exit()


def scenario_from_args(args: argparse.Namespace) -> Scenario:
    """The scenario file with every option given on the command line applied.

    ``--jobs`` without ``--duration-s`` runs until that many jobs are added.
    """
    overrides = {spec.name: getattr(args, spec.name) for spec in dataclasses.fields(Scenario)
                 if spec.name not in _NOT_OPTIONS}
    return Scenario.load(args.scenario).with_overrides(**overrides)


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from botrix_toolkit.server.connect import connect

    scenario = scenario_from_args(args)
    console = Console()
    q = connect(args.redis_url, prefix=args.prefix)
    try:
        if args.max:
            return _run_max(q, scenario, args, console)
        from botrix_toolkit.sim.simulation import run_simulation

        if args.quiet or not sys.stdout.isatty():
            result = run_simulation(q, scenario)
        else:
            with LiveDisplay(console) as display:
                result = run_simulation(q, scenario, progress=display.update)
    finally:
        q.close()
    _print_summary(console, result)
    if not args.no_save:
        folder = result.save(args.out)
        console.print(f"saved events, stats and summary to {folder}")
    lost = result.conservation["lost"]
    if lost is None:
        return EXIT_UNCHECKED
    return 0 if lost == 0 else EXIT_LOST


def _run_max(q: Any, scenario: Scenario, args: argparse.Namespace, console: Any) -> int:
    from botrix_toolkit.sim.max_throughput import measure_max_throughput

    batches = (args.batch,) if args.batch is not None else (100, 500, 1000)
    console.print(f"measuring: 1 producer + {scenario.workers} worker processes, batch sizes "
                  f"{', '.join(map(str, batches))}, {args.max_seconds:g} s each, then the raw "
                  "baseline at the best one...")
    found = measure_max_throughput(q, workers=scenario.workers, batches=batches,
                                   measure_s=args.max_seconds)
    for batch, rate in found.tried.items():
        console.print(f"  batch {batch:>5}: {rate:>10,.0f} jobs/s")
    console.print(f"toolkit   {found.toolkit_jobs_per_s:>10,.0f} jobs/s end to end "
                  f"(add_jobs, dequeue_jobs({found.batch}), complete_jobs)")
    console.print(f"baseline  {found.baseline_jobs_per_s:>10,.0f} jobs/s (raw redis-py pipelines, "
                  "same effects, same processes)")
    console.print(f"ratio     {found.ratio:>10.2f}")
    return 0


def _print_summary(console: Any, result: Any) -> None:
    from rich.table import Table

    s, c = result.summary, result.conservation
    overview = Table(title=f"simulation {s['name']} ({s['run_tag']}, seed {s['seed']})",
                     show_header=False)
    overview.add_column("metric")
    overview.add_column("value", justify="right")
    throughput = s["throughput_jobs_per_s"]
    for name, value in (
        ("elapsed", f"{s['elapsed_s']:.1f} s"),
        ("throughput", f"{throughput:,.1f} jobs/s" if throughput else "-"),
        ("added", f"{s['added']:,}"),
        ("completed", _count(s["completed"])),
        ("failed (for good)", _count(s["failed"])),
        ("retries (requeued)", f"{s['retries']:,}"),
        ("recovered stalled", f"{s['recovered_stalled']:,}"),
        ("worker crashes", f"{s['crashes']:,}"),
        ("server outages", _outages(s)),
        ("conservation", c.get("unchecked") or (
            f"{c['completed']:,} completed + {c['failed']:,} failed + "
            f"{c['cancelled']:,} cancelled + {c['queued']:,} queued + "
            f"{c['processing']:,} processing; lost {c['lost']}")),
    ):
        overview.add_row(name, value)
    console.print(overview)
    latency = result.latency_summary
    if len(latency):
        table = Table(title="latency by priority (seconds)")
        table.add_column("priority")
        headers = {"wait_count": "attempts", "wait_p50_s": "wait p50", "wait_p90_s": "p90",
                   "wait_p99_s": "p99", "run_p50_s": "run p50", "run_p90_s": "p90",
                   "run_p99_s": "p99"}
        columns = list(headers)
        for header in headers.values():
            table.add_column(header, justify="right")
        for label, row in latency.iterrows():
            table.add_row(str(label), *(f"{row[col]:,.0f}" if col.endswith("count") else
                                        f"{row[col]:.4f}" for col in columns))
        console.print(table)
    if c["lost"]:
        console.print(f"[bold red]LOST {c['lost']} jobs[/], e.g. {c['lost_ids'][:5]}")


def _count(value: int | None) -> str:
    return "unknown" if value is None else f"{value:,}"


def _outages(summary: dict[str, Any]) -> str:
    outages = summary.get("server_outages", 0)
    if not outages:
        return "none"
    return (f"{outages} ridden out, {summary['outage_s']:.1f} s in all "
            "(events of that time are missing)")


class LiveDisplay:
    """A rich table of a run's counters and rates, redrawn on each progress report."""

    def __init__(self, console: Any) -> None:
        from rich.live import Live

        self.live = Live(console=console, refresh_per_second=4, transient=False)
        # (elapsed, added, completed) of the last reports, for rates over ~2 s
        self.history: list[tuple[float, int, int]] = []

    def __enter__(self) -> LiveDisplay:
        self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.stop()

    def update(self, progress: Any) -> None:
        self.live.update(self._table(progress))

    def _table(self, p: Any) -> Any:
        from rich.table import Table

        self.history.append((p.elapsed_s, p.added, p.completed))
        while len(self.history) > 2 and p.elapsed_s - self.history[0][0] > 2.0:
            self.history.pop(0)
        t0, added0, completed0 = self.history[0]
        span = max(p.elapsed_s - t0, 1e-9)
        stats = p.stats
        table = Table(title=f"botrix simulate · {p.name} · {p.server}"
                            f"{'' if p.producing else ' · draining'}", show_header=False)
        table.add_column("what")
        table.add_column("value", justify="right")
        for name, value in (
            ("elapsed", f"{p.elapsed_s:6.1f} s"),
            ("added", f"{p.added:,}  ({(p.added - added0) / span:,.0f}/s)"),
            ("completed", f"{p.completed:,}  ({(p.completed - completed0) / span:,.0f}/s)"),
            ("failed / retried", f"{p.failed:,} / {p.requeued:,}"),
            ("recovered stalled", f"{p.recovered:,}  (crashes {p.crashes})"),
            ("queue high/normal/low", f"{stats.get('high_priority', 0):,} / "
                                      f"{stats.get('normal_priority', 0):,} / "
                                      f"{stats.get('low_priority', 0):,}"),
            ("processing", f"{stats.get('processing_count', 0):,}"),
        ):
            table.add_row(name, value)
        return table
