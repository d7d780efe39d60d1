"""The ``botrix`` command, run as a real subprocess (and in-process for parsing and errors)."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from botrix_toolkit.cli import main as cli
from botrix_toolkit.core.keys import DEFAULT_PREFIX
from botrix_toolkit.server.embedded import EmbeddedServer
from botrix_toolkit.server.ports import free_port


def botrix(*args: str, home: Path, tmpdir: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BOTRIX_HOME": str(home)}
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)
    env.pop("BOTRIX_REDIS_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "botrix_toolkit.cli", *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """A BOTRIX_HOME for one test; any server started in it is stopped afterwards."""
    try:
        yield tmp_path
    finally:
        EmbeddedServer(data_dir=tmp_path).stop()


@pytest.mark.slow
def test_server_start_status_stop_round_trip(home: Path) -> None:
    port = str(free_port())

    started = botrix("server", "start", "--port", port, home=home)
    assert started.returncode == 0, started.stderr
    url = started.stdout.strip()
    assert url == f"redis://127.0.0.1:{port}/0"
    assert redis.Redis.from_url(url).ping() is True

    again = botrix("server", "start", home=home)  # the running server is found, not doubled
    assert (again.returncode, again.stdout.strip()) == (0, url)

    status = botrix("server", "status", home=home)
    assert status.returncode == 0
    pid = EmbeddedServer(data_dir=home).status()["pid"]
    assert f"url       {url}" in status.stdout
    assert f"pid       {pid}" in status.stdout
    assert "version   9." in status.stdout or "version   8." in status.stdout
    assert f"data dir  {home}" in status.stdout

    stopped = botrix("server", "stop", home=home)
    assert stopped.returncode == 0
    assert "stopped" in stopped.stdout

    after = botrix("server", "status", home=home)
    assert after.returncode == 1
    assert "running   no" in after.stdout


def test_server_status_json(home: Path) -> None:
    url = EmbeddedServer(data_dir=home, port=free_port()).start()

    result = botrix("server", "status", "--json", home=home)

    assert result.returncode == 0
    status = json.loads(result.stdout)
    assert status["running"] is True
    assert status["url"] == url
    assert status["data_dir"] == str(home)


def test_server_outlives_the_cli_process(home: Path) -> None:
    url = botrix("server", "start", "--port", str(free_port()), home=home).stdout.strip()
    # the CLI process has exited: the server must still answer
    client = redis.Redis.from_url(url)
    try:
        assert client.ping() is True
    finally:
        client.close()


def test_data_dir_option_overrides_botrix_home(
    home: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    other = tmp_path_factory.mktemp("other")
    try:
        result = botrix("server", "start", "--data-dir", str(other), "--port", str(free_port()),
                        home=home)
        assert result.returncode == 0, result.stderr
        assert EmbeddedServer(data_dir=other).status()["running"] is True
        assert EmbeddedServer(data_dir=home).status()["running"] is False
    finally:
        EmbeddedServer(data_dir=other).stop()


def test_stop_when_not_running_is_not_an_error(home: Path) -> None:
    result = botrix("server", "stop", home=home)
    assert result.returncode == 0
    assert "no server running" in result.stdout


def test_start_on_a_busy_port_prints_one_line_error_and_exits_2(home: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]

        result = botrix("server", "start", "--port", str(port), home=home)

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("botrix: error:")]
    assert len(error_lines) == 1
    assert f"port {port} is in use" in error_lines[0]


def test_verbose_error_shows_the_server_log_tail(home: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]

        result = botrix("-v", "server", "start", "--port", str(port), home=home)

    assert result.returncode == 2
    assert "Address already in use" in result.stderr


def test_main_in_process_status_of_an_empty_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["server", "status", "--data-dir", str(tmp_path)])
    assert code == 1
    assert capsys.readouterr().out.splitlines() == ["running   no", f"data dir  {tmp_path}"]


def test_missing_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        cli.main([])
    assert raised.value.code == 2
    assert "usage: botrix" in capsys.readouterr().err


def test_each_command_module_registers_its_own_subcommand_with_a_handler() -> None:
    for name in cli.COMMAND_MODULES:
        module = importlib.import_module(name)
        subparsers = argparse.ArgumentParser().add_subparsers(dest="command")
        module.register(subparsers)
        command = name.rsplit(".", 1)[1]
        assert list(subparsers.choices) == [command], name
        assert callable(subparsers.choices[command].get_default("handler")), name
    built = next(a for a in cli.build_parser()._actions if a.dest == "command")
    assert set(built.choices) == {"server", *(name.rsplit(".", 1)[1] for name in cli.COMMAND_MODULES)}


def test_every_command_on_a_server_takes_the_same_redis_url_and_prefix_options() -> None:
    commands = next(a for a in cli.build_parser()._actions if a.dest == "command").choices
    names = ("bench", "dashboard", "simulate", "worker")
    options = {name: {a.dest: a for a in commands[name]._actions} for name in names}
    shared = ("dashboard", "simulate", "worker")
    assert len({options[name]["redis_url"].help for name in shared}) == 1, "one definition, one help text"
    assert options["bench"]["redis_url"].help == options["dashboard"]["redis_url"].help.replace(
        "the embedded server", "a fresh embedded server of its own"), "bench measures on a server of its own"
    assert all(opts["redis_url"].default is None for opts in options.values())
    for name in ("dashboard", "simulate", "worker"):
        assert options[name]["prefix"].default == DEFAULT_PREFIX, name
    assert "prefix" not in options["bench"], "bench keeps its keys under a prefix of its own"


def test_bench_without_a_url_measures_on_a_fresh_server_and_leaves_the_shared_one_alone(
    home: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    temp = tmp_path_factory.mktemp("tmpdir")
    result = botrix("bench", "--only", "queue", "--jobs", "20", "--bulk-jobs", "100", "--rounds", "1",
                    home=home, tmpdir=temp)
    assert result.returncode == 0, result.stderr
    assert "(a fresh embedded server of its own, deleted afterwards)" in result.stdout
    assert "dequeue+complete" in result.stdout
    assert not (home / "server.json").exists(), "the shared embedded server was never started"
    assert list(temp.iterdir()) == [], "the fresh server's folder is deleted"


def test_bench_with_a_url_measures_on_that_server(redis_url: str, home: Path) -> None:
    result = botrix("bench", "--redis-url", redis_url, "--only", "queue",
                    "--jobs", "20", "--bulk-jobs", "100", "--rounds", "1", home=home)
    assert result.returncode == 0, result.stderr
    assert f"server: {redis_url}\n" in result.stdout
    assert not (home / "server.json").exists()


@pytest.mark.parametrize(("argv", "scenario"), [(["simulate", "--help"], "steady"),
                                                (["simulate", "burst", "--help"], "burst")])
def test_simulate_help_shows_the_chosen_scenarios_values(
    capsys: pytest.CaptureFixture[str], argv: list[str], scenario: str
) -> None:
    from botrix_toolkit.sim.scenarios import Scenario

    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    chosen = Scenario.load(scenario)
    assert chosen.service_mean_s != Scenario().service_mean_s, "the file differs from the built-in default"
    assert f"service mean s [{scenario}: {chosen.service_mean_s:g}]" in shown
    assert f"workers [{scenario}: {chosen.workers}]" in shown
    assert f"{Scenario().service_mean_s:g}]" not in shown
    assert "scenario default" not in shown


def test_dashboard_to_a_dead_server_says_so_in_the_terminal_and_keeps_serving(tmp_path: Path) -> None:
    from tests.waiting import wait_for, wait_for_dashboard

    dead = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    port = free_port()
    log = (tmp_path / "dashboard.log").open("w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "botrix_toolkit.cli", "dashboard", "--redis-url", dead, "--port", str(port)],
        env={**os.environ, "BOTRIX_HOME": str(tmp_path)}, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for_dashboard(f"http://127.0.0.1:{port}", process, log, timeout=120)  # still serving

        def said() -> str:
            log.seek(0)
            return log.read()

        wait_for(lambda: "cannot be reached" in said(), "the terminal message", timeout=30)
        line = next(line for line in said().splitlines() if "cannot be reached" in line)
        assert "redis://:***@127.0.0.1" in line and "hunter2" not in said()
        assert "retries" in line
    finally:
        os.killpg(process.pid, 15)
        process.wait(20)
        log.close()
