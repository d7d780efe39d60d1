"""Load simulation against a real server: conservation, priorities, crashes, saved runs.

Runs are a few seconds long. No assertion is about speed; bounds on time are
liveness limits only.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import redis

from botrix_toolkit.core.errors import InvalidInputError
from botrix_toolkit.core.queue import QueueService
from botrix_toolkit.frames import analysis
from botrix_toolkit.frames.events import EventRecorder
from botrix_toolkit.server.embedded import EmbeddedServer
from botrix_toolkit.server.ports import free_port
from botrix_toolkit.sim.max_throughput import measure_max_throughput
from botrix_toolkit.sim.scenarios import SCENARIO_DIR, JobFactory, Scenario, parse_priority_mix
from botrix_toolkit.sim.simulation import SimulationResult, check_conservation, run_simulation
from tests.waiting import wait_for

REPO = Path(__file__).resolve().parent.parent
QUICK = {"drain_s": 60, "stats_interval_s": 0.25, "users": 20}


def _completed_per_job(events: pd.DataFrame) -> pd.Series:
    done = events[events["event"] == "job_completed"]
    return done.groupby("job_id").size()


# -- scenarios (no server) ----------------------------------------------------

@pytest.mark.parametrize("path", sorted(SCENARIO_DIR.glob("*.toml")), ids=lambda p: p.stem)
def test_shipped_scenarios_load(path: Path) -> None:
    scenario = Scenario.load(path)
    assert scenario.name == path.stem
    assert scenario.description


def test_scenario_names_and_crash_file() -> None:
    assert {p.stem for p in SCENARIO_DIR.glob("*.toml")} >= {
        "steady", "burst", "priority-starvation", "worker-crash"}
    assert Scenario.load("worker-crash").crashes >= 1
    assert Scenario.load("burst").rate_shape == "step"


def test_unknown_scenario_key_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="unknown scenario keys \\['rat'\\]"):
        Scenario.from_dict({"rat": 5})
    with pytest.raises(InvalidInputError, match="failure_rate"):
        Scenario(failure_rate=1.5)


def test_rate_shapes() -> None:
    step = Scenario(rate=10, rate_shape="step", burst_rate=100, burst_period_s=4, burst_duty=0.25)
    assert [step.rate_at(t) for t in (0, 2.9, 3.1, 4.5)] == [10, 10, 100, 10]
    sine = Scenario(rate=10, rate_shape="sine", burst_rate=30, burst_period_s=4)
    assert sine.rate_at(0) == pytest.approx(10) and sine.rate_at(2) == pytest.approx(30)


def test_job_factory_is_reproducible_with_a_seed() -> None:
    import random

    scenario = Scenario(priority_mix=parse_priority_mix("high=1,normal=0,low=1"))
    first = JobFactory(scenario, "t", random.Random(7)).make(50)
    again = JobFactory(scenario, "t", random.Random(7)).make(50)
    assert first == again
    assert {job["priority"] for job in first} == {0, 2}
    assert all(1 <= job["count"] <= 100 for job in first)


# -- runs ----------------------------------------------------------------------

@pytest.mark.slow
def test_conservation_with_failures_and_retries(queue: QueueService, tmp_path: Path) -> None:
    result = run_simulation(queue, "steady", duration_s=2, rate=100, failure_rate=0.3,
                            max_retries=1, seed=11, progress=False, **QUICK)
    c = result.conservation
    assert c["added"] > 0
    assert c["lost"] == 0, c["lost_ids"]
    accounted = c["completed"] + c["failed"] + c["cancelled"] + c["queued"] + c["processing"]
    assert accounted == c["added"]
    assert c["failed"] > 0 and result.summary["retries"] > 0
    # The events agree with Redis.
    counts = analysis.throughput(result.events).sum()
    assert counts["completed"] == c["completed"]
    assert counts["failed"] == c["failed"]
    assert counts["added"] == c["added"]

    # Saved history loads back into the analysis functions with the same counts.
    folder = result.save(tmp_path / "run")
    events = pd.read_parquet(folder / "events.parquet")
    stats = pd.read_parquet(folder / "stats.parquet")
    assert len(events) == len(result.events)
    reloaded = analysis.throughput(events).sum()
    assert reloaded["completed"] == c["completed"] and reloaded["requeued"] == counts["requeued"]
    assert len(analysis.latency(events)) == len(result.latency)
    assert len(analysis.queue_depth(stats)) == stats["timestamp"].nunique() > 0
    loaded = SimulationResult.load(folder)
    assert loaded.conservation == c
    pd.testing.assert_frame_equal(loaded.latency_summary, result.latency_summary)
    assert len(EventRecorder.load(folder / "events.parquet").frame()) == len(events)
    # No secret in what was saved.
    assert "password" not in (folder / "summary.json").read_text()
    assert not events["data"].str.contains("password").any()


@pytest.mark.slow
def test_high_priority_waits_less_than_low_under_backlog(queue: QueueService) -> None:
    result = run_simulation(
        queue, "priority-starvation", duration_s=2, rate=300, workers=1, concurrency=2, batch=1,
        service="fixed", service_mean_s=0.01, priority_mix={"high": 1, "normal": 1, "low": 1},
        seed=5, progress=False, **QUICK)
    assert result.conservation["lost"] == 0
    assert result.stats["queue_length"].max() > 50  # there was a backlog
    waits = result.latency_summary["wait_p50_s"]
    assert waits["high"] < waits["normal"] < waits["low"]


@pytest.mark.slow
def test_killed_worker_job_is_recovered_and_completes_once(queue: QueueService) -> None:
    result = run_simulation(
        queue, "worker-crash", duration_s=2.5, rate=80, crashes=1, crash_after_s=0.5,
        stall_timeout_s=1.0, recovery_interval_s=0.2, service="fixed", service_mean_s=0.02,
        scale_by_count=False, seed=3, progress=False, **QUICK)
    c = result.conservation
    assert result.summary["crashes"] == 1
    assert result.summary["recovered_stalled"] >= 1
    assert c["lost"] == 0 and c["completed"] == c["added"]
    recovered = result.events.loc[result.events["event"] == "job_recovered", "job_id"].unique()
    per_job = _completed_per_job(result.events)
    assert len(recovered) >= 1
    assert (per_job.reindex(recovered, fill_value=0) == 1).all()
    assert (per_job == 1).all() and len(per_job) == c["added"]
    for job_id in recovered:
        assert queue.get_job_status(job_id) == "completed"


def test_conservation_counts_queued_and_lost_jobs(queue: QueueService) -> None:
    """The check itself can fail: a job whose keys vanished is lost."""
    ids = queue.add_jobs([{"id": f"run-{n:09d}", "count": 1} for n in range(3)])
    queue.complete_job(ids[0])
    queue.redis.delete(queue.keys.status(ids[2]))
    counts = check_conservation(queue, "run", 4)  # the 4th was never written
    assert counts["completed"] == 1 and counts["queued"] == 1
    assert counts["lost"] == 2 and counts["lost_ids"] == [ids[2], "run-000000003"]


@pytest.mark.slow
def test_job_count_without_duration(queue: QueueService) -> None:
    result = run_simulation(queue, "steady", jobs=30, rate=100, failure_rate=0, seed=2, **QUICK)
    assert result.scenario.duration_s is None
    c = result.conservation
    assert c["added"] == 30 == c["completed"], c


def test_command_line_options_override_the_scenario_file() -> None:
    import argparse

    from botrix_toolkit.cli.simulate import register, scenario_from_args

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["simulate", "burst", "--rate", "7", "--no-restart-crashed",
                              "--priority-mix", "high=1,low=3", "--jobs", "9"])
    scenario = scenario_from_args(args)
    assert scenario.name == "burst" and scenario.rate_shape == "step"  # from the file
    assert scenario.rate == 7 and scenario.restart_crashed is False and scenario.jobs == 9
    assert scenario.duration_s is None
    assert scenario.priority_mix == {"high": 1.0, "low": 3.0}


def test_jobs_without_a_duration_run_until_that_many_are_added() -> None:
    steady = Scenario.load("steady")
    assert steady.duration_s is not None
    counted = steady.with_overrides(jobs=40)
    assert (counted.jobs, counted.duration_s) == (40, None)
    both = steady.with_overrides(jobs=40, duration_s=2.5)
    assert (both.jobs, both.duration_s) == (40, 2.5)
    assert steady.with_overrides(rate=9.0).duration_s == steady.duration_s


@pytest.mark.slow
def test_max_measures_both_and_cleans_up(redis_url: str, key_prefix: str) -> None:
    found = measure_max_throughput(redis_url, workers=1, batches=200, measure_s=0.5, warmup_s=0.3,
                                   prefix=key_prefix)
    assert found.toolkit_jobs_per_s > 0 and found.baseline_jobs_per_s > 0
    assert found.ratio > 0
    client = redis.Redis.from_url(redis_url)
    try:
        assert list(client.scan_iter(match=key_prefix + "*", count=1000)) == []
    finally:
        client.close()


@pytest.mark.slow
def test_cli_simulate_prints_summary_and_saves(redis_url: str, key_prefix: str,
                                               tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run(
        [sys.executable, "-m", "botrix_toolkit.cli", "simulate", "steady", "--redis-url", redis_url,
         "--prefix", key_prefix, "--duration-s", "1", "--rate", "50", "--seed", "1",
         "--priority-mix", "high=1,normal=1,low=1", "--out", str(tmp_path / "cli"), "--quiet"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "lost 0" in out.stdout
    assert "latency by priority" in out.stdout
    assert {p.name for p in (tmp_path / "cli").iterdir()} == {
        "events.parquet", "stats.parquet", "summary.json"}


def test_a_changed_scenario_says_so_in_its_description() -> None:
    steady = Scenario.load("steady")
    changed = steady.replace(rate=40, seed=steady.seed, workers=None)
    assert changed.rate == 40
    assert changed.description == f"{steady.description} (changed: rate=40)"
    assert steady.replace(rate=steady.rate).description == steady.description


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_cli_simulate_rides_out_a_server_restart_and_reports_it(tmp_path: Path) -> None:
    """The server SIGKILLed mid-run and back 3 s later (append-only file replayed)."""
    server = EmbeddedServer(data_dir=tmp_path / "server", port=free_port())
    url = server.start()
    redis.Redis.from_url(url).config_set("appendfsync", "always")
    env = dict(os.environ, PYTHONPATH=str(REPO), BOTRIX_HOME=str(tmp_path / "home"))
    try:
        run = subprocess.Popen(
            [sys.executable, "-m", "botrix_toolkit.cli", "simulate", "steady", "--redis-url", url,
             "--duration-s", "8", "--seed", "1", "--out", str(tmp_path / "run"), "--quiet"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        client = redis.Redis.from_url(url)
        try:
            wait_for(lambda: client.dbsize() > 600, "the run to be under way", 120.0)
        finally:
            client.close()
        os.kill(server.status()["pid"], signal.SIGKILL)
        wait_for(lambda: not server.status()["running"], "the killed server to be gone", 30.0)
        time.sleep(3.0)  # the outage: a restart that replays its append-only file
        redis.Redis.from_url(server.start()).config_set("appendfsync", "always")
        out, err = run.communicate(timeout=200)
    finally:
        if run.poll() is None:
            run.kill()
        server.stop()
    assert run.returncode == 0, err
    assert "Traceback" not in err
    assert "lost 0" in out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())["summary"]
    assert summary["server_outages"] >= 1 and summary["outage_s"] > 2
    assert "ridden out" in out
    assert summary["lost"] == 0 and summary["completed"] == summary["added"] > 600 / 2
