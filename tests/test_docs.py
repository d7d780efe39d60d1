"""The README keeps its promises (cited tests exist, its commands are CI's) and the code passes ruff."""

from __future__ import annotations

import re
from pathlib import Path

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
