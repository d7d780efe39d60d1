"""Load simulation: a producer process, worker processes and a coordinator.

``run_simulation`` starts an EventRecorder, then worker processes (each a
``Worker`` whose handler sleeps for a drawn service time and fails with the
scenario's probability) and one producer process (adds jobs at the scenario's
rate). The coordinator, in the calling process, snapshots ``get_queue_stats``,
runs the ``recover_stalled`` loop that brings back the jobs of crashed workers,
injects the crashes (a worker SIGKILLs itself while it holds jobs) and draws the
live display. At the end it checks conservation against Redis itself: every
job added is completed, failed, cancelled, or still queued or processing.

Processes, not threads, so the load is not bound to one core. They are
started with ``spawn``: the coordinator already runs threads (recorder) when
it starts them, and ``fork`` would copy their locks mid-use.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import random
import signal
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from botrix_toolkit.core.clients import mget_raw
from botrix_toolkit.core.errors import AccessDeniedError, InvalidInputError, OperationError, ServerConnectionError
from botrix_toolkit.core.node_pipelines import run_on_queue_node
from botrix_toolkit.core.queue import QueueService
from botrix_toolkit.core.redaction import redact_url
from botrix_toolkit.core.settings import runs_dir
from botrix_toolkit.frames import analysis
from botrix_toolkit.frames.event_frames import STATS_COLUMNS, empty_frame
from botrix_toolkit.frames.events import EventRecorder, RecordedEvents
from botrix_toolkit.sim.processes import (
    COUNTERS,
    SharedFlag,
    as_queue,
    process_url,
    producer_main,
    worker_main,
)
from botrix_toolkit.sim.scenarios import Scenario, job_id

logger = logging.getLogger(__name__)

_COORDINATOR_TICK_S = 0.05
T = TypeVar("T")
_CONSERVATION_CHUNK = 5000


@dataclass(frozen=True)
class RunProgress:
    """What a run has done so far, handed to the ``progress`` callback a few times a second."""

    name: str
    server: str  # URL without password
    elapsed_s: float
    added: int
    claimed: int
    completed: int
    failed: int  # for good
    requeued: int
    recovered: int  # stalled jobs put back by the coordinator
    crashes: int  # crashes requested so far
    stats: Mapping[str, int]  # the latest get_queue_stats()
    producing: bool


RunProgressCallback = Callable[[RunProgress], None]


# ---------------------------------------------------------------------------
# The result
# ---------------------------------------------------------------------------

@dataclass
class SimulationResult:
    """A finished run: its recordings, numbers and conservation check.

    ``events``: the events frame (frames.EVENT_COLUMNS) of this run's jobs only.
    ``stats``: one row per queue snapshot (frames.STATS_COLUMNS).
    ``latency``: analysis.latency(events), one row per attempt.
    ``latency_summary``: analysis.summary(latency): wait/run percentiles by priority.
    ``summary``: scalars (throughput, counts, retries, recovered, crashes...).
    ``conservation``: counts by final state read from Redis; ``lost`` must be 0.
    """

    scenario: Scenario
    events: pd.DataFrame
    stats: pd.DataFrame
    summary: dict[str, Any]
    conservation: dict[str, Any]
    latency: pd.DataFrame = field(default_factory=pd.DataFrame)
    latency_summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    recording: RecordedEvents | None = field(default=None, repr=False)

    def save(self, path: str | Path | None = None) -> Path:
        """Writes events.parquet, stats.parquet and summary.json into ``path``
        (default ``$BOTRIX_HOME/runs/<scenario name>``); returns the directory."""
        folder = Path(path) if path is not None else runs_dir() / self.scenario.name
        folder.mkdir(parents=True, exist_ok=True)
        recording = self.recording or RecordedEvents(events=self.events)
        RecordedEvents(events=self.events, gap_list=recording.gap_list,
                       malformed_events=recording.malformed_events,
                       counters=recording.counters, channel=recording.channel,
                       ).save(folder / "events.parquet")
        self.stats.to_parquet(folder / "stats.parquet", index=False)
        document = {
            "scenario": self.scenario.to_dict(),
            "summary": self.summary,
            "conservation": self.conservation,
            "latency_summary": json.loads(self.latency_summary.to_json(orient="index")),
        }
        (folder / "summary.json").write_text(json.dumps(document, indent=2, default=str) + "\n")
        return folder

    @classmethod
    def load(cls, path: str | Path) -> SimulationResult:
        """A saved run read back (no server needed)."""
        folder = Path(path)
        document = json.loads((folder / "summary.json").read_text())
        recording = RecordedEvents.load(folder / "events.parquet")
        events = recording.frame()
        latency = analysis.latency(events)
        return cls(
            scenario=Scenario.from_dict(document["scenario"]),
            events=events,
            stats=pd.read_parquet(folder / "stats.parquet"),
            summary=document["summary"],
            conservation=document["conservation"],
            latency=latency,
            latency_summary=analysis.summary(latency),
            recording=recording,
        )

    def summary_frame(self) -> pd.DataFrame:
        """``summary`` as a one-column frame (index: metric name)."""
        return pd.DataFrame({"value": pd.Series(self.summary, dtype=object)})


# ---------------------------------------------------------------------------
# The coordinator
# ---------------------------------------------------------------------------

@dataclass
class _WorkerProcess:
    slot: int
    process: Any
    ready: Any  # set by the process once its Worker is about to run
    crash: Any  # set by the coordinator: die at the next job
    crashed: bool = False


class _Run:
    """The state of one run in the coordinator."""

    def __init__(self, q: QueueService, url: str, scenario: Scenario, seed: int) -> None:
        self.q, self.url, self.scenario, self.seed = q, url, scenario, seed
        self.ctx = mp.get_context("spawn")
        self.run_tag = f"sim-{scenario.name}-{uuid.uuid4().hex[:8]}"
        slots = 1 + scenario.workers + scenario.crashes
        self.counters = self.ctx.Array("q", slots * len(COUNTERS), lock=False)
        # flags: stop, go, then ready and crash per worker slot
        self.flags = self.ctx.Array("b", 2 + 2 * slots, lock=False)
        self.stop, self.go = SharedFlag(self.flags, 0), SharedFlag(self.flags, 1)
        self.workers: list[_WorkerProcess] = []
        self.next_slot = 1
        self.stats_rows: list[dict[str, Any]] = []
        self.recovered: list[str] = []
        self.crashes_done = 0
        self.started = time.monotonic()
        self.unreachable = 0  # coordinator calls failed in a row (past the reconnect window)

    def total(self, name: str) -> int:
        column = COUNTERS.index(name)
        rows = len(self.counters) // len(COUNTERS)
        return sum(self.counters[r * len(COUNTERS) + column] for r in range(rows))

    def start_worker(self) -> _WorkerProcess:
        slot, self.next_slot = self.next_slot, self.next_slot + 1
        ready, crash = SharedFlag(self.flags, 2 + 2 * slot), SharedFlag(self.flags, 3 + 2 * slot)
        process = self.ctx.Process(
            target=worker_main, name=f"botrix-sim-worker-{slot}", daemon=True,
            args=(self.url, self.q.keys.prefix, self.scenario, self.seed * 1000 + slot, slot,
                  self.counters, ready, self.stop, crash, _log_level()))
        process.start()
        handle = _WorkerProcess(slot, process, ready, crash)
        self.workers.append(handle)
        return handle

    def progress(self, producing: bool) -> RunProgress:
        return RunProgress(
            name=self.scenario.name, server=redact_url(self.url),
            elapsed_s=time.monotonic() - self.started, added=self.total("added"),
            claimed=self.total("claimed"), completed=self.total("completed"),
            failed=self.total("failed"), requeued=self.total("requeued"),
            recovered=len(self.recovered), crashes=self.crashes_done,
            stats=self.stats_rows[-1] if self.stats_rows else {}, producing=producing)

    def reachable(self, call: Callable[[], T]) -> T | None:
        """``call()``, or None when the server stays unreachable past the reconnect
        window (logged once per outage): the run goes on and reports it."""
        try:
            result = call()
        except AccessDeniedError:
            raise
        except ServerConnectionError as exc:
            if not self.unreachable:
                logger.warning("server unreachable, the run goes on: %s", exc)
            self.unreachable += 1
            return None
        self.unreachable = 0
        return result

    def sample_stats(self) -> dict[str, Any]:
        row = dict(self.q.get_queue_stats(), timestamp=pd.Timestamp.now(tz="UTC"))
        self.stats_rows.append(row)
        return row

    def stats_frame(self) -> pd.DataFrame:
        if not self.stats_rows:
            return empty_frame(STATS_COLUMNS)
        frame = pd.DataFrame(self.stats_rows)[list(STATS_COLUMNS)]
        return frame.astype(STATS_COLUMNS)


def run_simulation(
    q_or_url: QueueService | str | None,
    scenario: Scenario | Mapping[str, Any] | str | Path,
    *,
    duration_s: float | None = None,
    jobs: int | None = None,
    seed: int | None = None,
    prefix: str | None = None,
    progress: RunProgressCallback | None = None,
    **overrides: Any,
) -> SimulationResult:
    """Runs a scenario against a server and returns what happened.

    ``jobs`` without ``duration_s`` runs until that many jobs are added.
    ``q_or_url``: a QueueService (its prefix is used), a URL, or None for
    ``connect()``'s default. ``scenario``: a Scenario, a mapping, a TOML path or
    a scenario name from data/scenarios. ``duration_s``, ``jobs``, ``seed`` and
    any Scenario field in ``overrides`` replace the scenario's values.
    ``progress``: called with a RunProgress about four times a second (the CLI
    draws its live display with it).

    The workers are ``spawn``ed processes: a script calling this needs the
    usual ``if __name__ == "__main__":`` guard (notebooks need nothing).
    """
    scenario = _as_scenario(scenario).with_overrides(duration_s=duration_s, jobs=jobs, seed=seed, **overrides)
    seed = scenario.seed if scenario.seed is not None else random.SystemRandom().randrange(2**31)
    q, own_q = as_queue(q_or_url, prefix)
    if q.url is None:
        raise InvalidInputError("run_simulation needs a QueueService made with from_url (or a URL): "
                         "the worker processes connect on their own")
    try:
        run = _Run(q, process_url(q), scenario, seed)
        return _execute(run, progress)
    finally:
        if own_q:
            q.close()


def _execute(run: _Run, progress: RunProgressCallback | None) -> SimulationResult:
    s, q = run.scenario, run.q
    if q.get_queue_length() or q.get_processing_count():
        logger.warning("queue %s is not empty: its jobs will be worked on by the simulation too",
                       q.keys.prefix)
    recorder = EventRecorder(q).start()  # before any job is added
    producer = run.ctx.Process(
        target=producer_main, name="botrix-sim-producer", daemon=True,
        args=(run.url, q.keys.prefix, s, run.run_tag, run.seed, run.counters, run.go, run.stop,
              _log_level()))
    try:
        producer.start()
        for _ in range(s.workers):
            run.start_worker()
        _wait_ready(run.workers, producer)
        run.started = time.monotonic()
        run.go.set()
        try:
            _coordinate(run, producer, progress)
        except KeyboardInterrupt:
            # Still stop cleanly and report: the jobs left are counted as queued.
            logger.warning("interrupted: stopping producer and workers")
    finally:
        run.stop.set()
        for handle in run.workers:
            handle.process.join(timeout=s.stall_timeout_s + 10)
            if handle.process.is_alive():
                logger.warning("worker process %d did not stop; terminating it", handle.slot)
                handle.process.terminate()
            elif handle.crash.is_set() and handle.process.exitcode == -signal.SIGKILL:
                handle.crashed = True  # died after the coordinator's last look
        if producer.pid is not None:
            producer.join(timeout=10)
        if producer.is_alive():
            producer.terminate()
    elapsed = time.monotonic() - run.started
    run.reachable(run.sample_stats)
    if progress:
        progress(run.progress(producing=False))
    time.sleep(0.3)  # let the last messages reach the recorder
    recorder.stop()
    recording = recorder.snapshot()
    return _result(run, recording, elapsed)


def _wait_ready(workers: list[_WorkerProcess], producer: Any, timeout: float = 120.0) -> None:
    """Waits for every worker process to be running; a process that died is an error."""
    deadline = time.monotonic() + timeout
    for handle in workers:
        while not handle.ready.wait(0.1):
            for process in (handle.process, producer):
                if not process.is_alive():
                    raise OperationError(f"simulation process {process.name} exited with code "
                                       f"{process.exitcode} before the run started")
            if time.monotonic() > deadline:
                raise OperationError(f"worker process {handle.slot} not ready after {timeout:.0f}s")


def _coordinate(run: _Run, producer: Any, progress: RunProgressCallback | None) -> None:
    s, q = run.scenario, run.q
    next_stats = next_recovery = next_draw = run.started
    crash_times = [run.started + s.crash_after_s * (k + 1) for k in range(s.crashes)]
    drain_deadline = None
    while True:
        now = time.monotonic()
        if now >= next_stats and run.reachable(run.sample_stats) is not None:
            next_stats += s.stats_interval_s
        if now >= next_recovery:
            run.recovered += run.reachable(lambda: q.recover_stalled(s.stall_timeout_s)) or []
            next_recovery = now + s.recovery_interval_s
        _inject_crashes(run, crash_times, now)
        if progress and now >= next_draw:
            progress(run.progress(producing=producer.is_alive()))
            next_draw = now + 0.25
        if not producer.is_alive():
            if drain_deadline is None:
                drain_deadline = now + s.drain_s
                logger.info("producer done after %d jobs; draining", run.total("added"))
            stats = run.reachable(q.get_queue_stats)
            idle = stats is not None and stats["queue_length"] == 0 and stats["processing_count"] == 0
            if idle or time.monotonic() >= drain_deadline:
                if not idle and stats is not None:
                    logger.warning("drain time (%.1fs) over with %d queued and %d processing",
                                   s.drain_s, stats["queue_length"], stats["processing_count"])
                return
        time.sleep(_COORDINATOR_TICK_S)


def _inject_crashes(run: _Run, crash_times: list[float], now: float) -> None:
    while crash_times and now >= crash_times[0]:
        crash_times.pop(0)
        alive = [h for h in run.workers if h.process.is_alive() and not h.crash.is_set()]
        if alive:
            victim = alive[run.crashes_done % len(alive)]
            victim.crash.set()  # it kills itself when it next starts a job
            run.crashes_done += 1
            logger.info("crash requested for worker process %d", victim.slot)
    for handle in list(run.workers):
        if handle.crash.is_set() and not handle.crashed and not handle.process.is_alive():
            handle.crashed = True
            logger.info("worker process %d died (exit %s)", handle.slot, handle.process.exitcode)
            if run.scenario.restart_crashed and not run.stop.is_set():
                run.start_worker()


# ---------------------------------------------------------------------------
# Results: conservation and summary
# ---------------------------------------------------------------------------

def _result(run: _Run, recording: RecordedEvents, elapsed: float) -> SimulationResult:
    events = recording.frame()
    events = events[events["job_id"].str.startswith(run.run_tag + "-").fillna(False)]
    events = events.reset_index(drop=True)
    added = run.total("added")
    conservation = run.reachable(lambda: check_conservation(run.q, run.run_tag, added))
    if conservation is None:
        # The server is gone at the end: the counts are unknown, never guessed.
        conservation = {"added": added, "completed": None, "failed": None, "cancelled": None,
                        "queued": None, "processing": None, "lost": None, "lost_ids": [],
                        "unchecked": "the server was unreachable at the end of the run"}
    latency = analysis.latency(events)
    per_bin = analysis.throughput(events) if len(events) else None
    counted = per_bin.sum().to_dict() if per_bin is not None else {}
    ended = latency["ended_at"].max() if len(latency) else pd.NaT
    started = latency["added_at"].min() if len(latency) else pd.NaT
    active_s = (ended - started).total_seconds() if pd.notna(ended) and pd.notna(started) else 0.0
    completed = conservation["completed"]
    summary = {
        "name": run.scenario.name,
        "run_tag": run.run_tag,
        "seed": run.seed,
        "prefix": run.q.keys.prefix,
        "elapsed_s": round(elapsed, 3),
        "active_s": round(active_s, 3),
        "added": added,
        "completed": completed,
        "failed": conservation["failed"],
        "retries": int(counted.get("requeued", 0)),
        "recovered_stalled": len(set(run.recovered) & set(events["job_id"].dropna())),
        "crashes": sum(1 for h in run.workers if h.crashed),
        "throughput_jobs_per_s": (round(completed / active_s, 2)
                                  if active_s > 0 and completed is not None else None),
        "events": len(events),
        "event_gaps": len(recording.gap_list),
        # The server outages the run rode out, as the event recorder saw them.
        "server_outages": len(recording.gap_list),
        "outage_s": round(sum(gap["duration_s"] for gap in recording.gap_list), 3),
        "events_completed": int(counted.get("completed", 0)),
        "lost": conservation["lost"],
    }
    latency_summary = analysis.summary(latency) if len(latency) else pd.DataFrame()
    return SimulationResult(run.scenario, events, run.stats_frame(), summary, conservation,
                            latency, latency_summary, recording)


def check_conservation(q: QueueService, run_tag: str, added: int) -> dict[str, Any]:
    """Where every job of a run is now, read from Redis.

    Keys: added, completed, failed, cancelled, queued (pending and in the
    queue), processing (running and in processing), lost (anything else: no
    status, pending but not queued, running but not held), lost_ids (up to 20).
    """
    counts: dict[str, Any] = {"added": added, "completed": 0, "failed": 0, "cancelled": 0,
              "queued": 0, "processing": 0, "lost": 0}
    lost_ids: list[str] = []
    keys = q.keys
    for start in range(0, added, _CONSERVATION_CHUNK):
        ids = [job_id(run_tag, n) for n in range(start, min(added, start + _CONSERVATION_CHUNK))]
        statuses, scores, held = run_on_queue_node(q.redis, keys, [
            partial(mget_raw, keys=[keys.status(i) for i in ids]),
            lambda pipe, ids=ids: pipe.zmscore(keys.queue, ids),  # type: ignore[misc]  # mypy infers no lambda with defaults
            lambda pipe, ids=ids: pipe.smismember(keys.processing, ids),  # type: ignore[misc]  # nor this one
        ])
        for job, status, score, is_held in zip(ids, statuses, scores, held):
            status = status.decode() if status is not None else None
            if status in ("completed", "failed", "cancelled"):
                counts[status] += 1
            elif status == "pending" and score is not None:
                counts["queued"] += 1
            elif status == "running" and is_held:
                counts["processing"] += 1
            else:
                counts["lost"] += 1
                if len(lost_ids) < 20:
                    lost_ids.append(job)
    counts["lost_ids"] = lost_ids
    return counts


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

def _log_level() -> int:
    """The level the child processes log at: this process's, but WARNING when unset."""
    level = logging.getLogger("botrix_toolkit").getEffectiveLevel()
    return level if logging.getLogger().handlers else logging.WARNING


def _as_scenario(scenario: Scenario | Mapping[str, Any] | str | Path) -> Scenario:
    if isinstance(scenario, Scenario):
        return scenario
    if isinstance(scenario, Mapping):
        return Scenario.from_dict(scenario)
    return Scenario.load(scenario)
