"""The README keeps its promises (cited tests exist, its commands are CI's) and the code passes ruff."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_test_the_readme_cites_exists() -> None:
    cited = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", README)
    assert len(cited) >= 15, "the guarantees section cites the tests that show each promise"
    missing = [
        f"{path}::{name}"
        for path, name in cited
        if not re.search(rf"^def {name}\(", (ROOT / path).read_text(encoding="utf-8"), re.MULTILINE)
    ]
    assert not missing, f"README cites tests that do not exist: {missing}"


def test_ci_runs_exactly_the_readme_test_command() -> None:
    quick_start = README.split("## Quick start", 1)[1].split("```", 2)[1]
    commands = [line for line in quick_start.splitlines() if line and not line.startswith(("#", "bash"))]
    assert len(commands) == 2, commands
    test_command = commands[1]
    assert "pytest" in test_command
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert f'test_command="{test_command}"' in ci
    assert f"\n{test_command} || status=$?" in ci


def test_the_readme_names_every_botrix_command() -> None:
    from botrix_toolkit.cli.main import build_parser

    parser = build_parser()
    subcommands = next(a for a in parser._actions if a.dest == "command").choices
    for name in subcommands:
        assert f"`botrix {name}" in README, f"README does not show `botrix {name}`"


def test_no_placeholder_is_left_in_the_readme() -> None:
    assert not re.search(r"^[A-Z_]{6,}$", README, re.MULTILINE)


def test_the_code_passes_the_projects_linter() -> None:
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "ruff", "check", str(ROOT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.timeout(900)  # a fresh venv and pip install come first
def test_the_quick_start_serves_the_dashboard_from_a_fresh_copy(tmp_path: Path) -> None:
    """The README's first command, exactly as written, in a copy of the repository with no venv."""
    import os
    import signal
    import subprocess

    from botrix_toolkit.server.ports import free_port
    from tests.waiting import wait_for_dashboard

    quick_start = README.split("## Quick start", 1)[1].split("```", 2)[1]
    first = [line for line in quick_start.splitlines() if line and not line.startswith(("#", "bash"))][0]
    assert first.endswith("botrix dashboard")
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    copy = tmp_path / "botrix-toolkit"
    for name in filter(None, tracked.decode().split("\0")):
        target = copy / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((ROOT / name).read_bytes())
    port = free_port()
    home = tmp_path / "home"
    env = {**os.environ, "HOME": str(home), "BOTRIX_HOME": str(home / "botrix")}
    env.pop("BOTRIX_REDIS_URL", None)
    env.pop("VIRTUAL_ENV", None)
    log = (tmp_path / "quick-start.log").open("w+")
    # the port is the one thing added: the suite may run beside a dashboard on 8501
    process = subprocess.Popen(["bash", "-c", f"{first} --port {port}"], cwd=copy, env=env,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_dashboard(f"http://127.0.0.1:{port}", process, log, timeout=840)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
        log.close()
        subprocess.run([str(copy / ".venv" / "bin" / "botrix"), "server", "stop"], env=env,
                       capture_output=True, timeout=60)


def test_the_wire_format_page_names_every_key_and_event_the_toolkit_writes() -> None:
    from botrix_toolkit.core.keys import QueueKeys

    page = (ROOT / "docs" / "wire-format.md").read_text(encoding="utf-8")
    keys = QueueKeys("<prefix>")
    for name in (keys.queue, keys.processing, keys.leases, keys.updates,
                 keys.data("<id>"), keys.status("<id>"), keys.results("<id>")):
        assert f"`{name}`" in page, f"docs/wire-format.md does not describe {name}"
    scripts = ROOT / "botrix_toolkit" / "core" / "scripts"
    published = {event for lua in scripts.glob("*.lua")
                 for event in re.findall(r"publish\(\w+, '(\w+)'", lua.read_text(encoding="utf-8"))}
    # set_status publishes the final event queue.py names
    queue_py = (ROOT / "botrix_toolkit" / "core" / "queue.py").read_text(encoding="utf-8")
    published |= set(re.findall(r'"(job_\w+)"', queue_py))
    assert {"job_recovered", "job_orphan_removed", "job_added", "job_completed"} <= published
    for event in published:
        assert f"`{event}`" in page, f"docs/wire-format.md does not describe the {event} event"


def readme_python_block(section: str) -> str:
    """The first ```python block under the README heading ``section``."""
    text = README.split(f"## {section}\n", 1)[1]
    return text.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_python_block_runs_as_pasted(embedded_server, monkeypatch) -> None:
    from botrix_toolkit.core.cleanup import delete_keys_under
    from botrix_toolkit.core.keys import DEFAULT_PREFIX

    code = readme_python_block("Using it from Python")
    remote = [line for line in code.splitlines() if "from_url(" in line]
    assert remote and all(line.lstrip().startswith("#") for line in remote), "a remote host only as a comment"
    assert "get_job(" in code and "get_job_status(" in code
    monkeypatch.setenv("BOTRIX_REDIS_URL", embedded_server.url)  # what `connect()` reads first
    namespace: dict = {}
    try:
        exec(compile(code, "README.md", "exec"), namespace)  # the README's own code
        q = namespace["q"]
        assert q.keys.prefix == DEFAULT_PREFIX
        first = namespace["job"]
        assert first.id == namespace["job_id"], "the high job, added first, is served first"
        assert q.get_job(first.id).status == "completed" and q.get_job(first.id).completed_at is not None
        assert q.get_job_status(namespace["held"].id) == "cancelled"  # requeued, then cleared
        assert q.get_queue_length() == 0 and q.get_processing_count() == 0
    finally:
        if "q" in namespace:
            delete_keys_under(namespace["q"].redis, f"{DEFAULT_PREFIX}:")
            namespace["q"].close()
