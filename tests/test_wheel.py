"""The wheel a user installs: built from this repository, installed in a fresh venv, used from an empty folder.

Nothing a command needs may depend on the checkout (the dashboard app, the
scenarios, the Lua scripts ship inside the wheel) and nothing may be written
inside the installed package. The fresh venv gets the wheel alone; its
dependencies (pandas, streamlit...) are borrowed from the test run's own
environment through a .pth file, so the test needs no package index.
"""

from __future__ import annotations

import os
import signal
import site
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from botrix_toolkit.server.ports import free_port
from tests.waiting import wait_for_dashboard

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_S = 90


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from the repository, as `pip wheel .` builds it for a package index."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(REPO)],
        check=True, timeout=300,
    )
    (built,) = out.glob("botrix_toolkit-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv with the wheel installed; yields its bin/ folder."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
                   check=True, timeout=300)
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # dependencies only: a path added by a .pth file has its own .pth files ignored,
    # so the checkout's editable install stays invisible to the fresh venv
    (Path(purelib) / "botrix_test_dependencies.pth").write_text(
        "\n".join(site.getsitepackages()) + "\n", encoding="utf-8")
    yield venv / "bin"


def _package_files(bin_dir: Path) -> dict[str, float]:
    purelib = subprocess.run([str(bin_dir / "python"), "-c",
                              "import botrix_toolkit, pathlib; print(pathlib.Path(botrix_toolkit.__file__).parent)"],
                             check=True, capture_output=True, text=True, cwd="/").stdout.strip()
    root = Path(purelib)
    assert root.parts[-2] == "site-packages", f"botrix_toolkit imported from {root}, not the fresh venv"
    return {str(p.relative_to(root)): p.stat().st_mtime for p in root.rglob("*")}


def test_the_wheel_ships_the_dashboard_scenarios_and_scripts_and_no_generic_top_level_name(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"botrix_toolkit"}
    for needed in ("botrix_toolkit/dashboard/app.py", "botrix_toolkit/data/scenarios/steady.toml",
                   "botrix_toolkit/core/scripts/claim_jobs.lua", "botrix_toolkit/py.typed"):
        assert needed in names
    assert not [n for n in names if "/runs/" in n or "__pycache__" in n or "/fixtures/" in n]


def test_an_installed_wheel_simulates_and_serves_the_dashboard_from_an_empty_folder(
    installed: Path, tmp_path: Path
) -> None:
    before = _package_files(installed)
    empty = tmp_path / "empty"
    empty.mkdir()
    home = tmp_path / "home"
    env = {**os.environ, "BOTRIX_HOME": str(home), "PATH": f"{installed}:{os.environ['PATH']}"}
    env.pop("BOTRIX_REDIS_URL", None)
    botrix = str(installed / "botrix")
    try:
        started = subprocess.run([botrix, "server", "start"], cwd=empty, env=env, capture_output=True,
                                 text=True, timeout=120)
        assert started.returncode == 0, started.stderr
        simulated = subprocess.run([botrix, "simulate", "steady", "--duration", "3", "--quiet"],
                                   cwd=empty, env=env, capture_output=True, text=True, timeout=300)
        assert simulated.returncode == 0, simulated.stdout + simulated.stderr
        assert "lost 0" in simulated.stdout
        assert (home / "runs" / "steady" / "summary.json").is_file()

        port = free_port()
        log = (tmp_path / "dashboard.log").open("w+")
        dashboard = subprocess.Popen([botrix, "dashboard", "--port", str(port)], cwd=empty, env=env,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for_dashboard(f"http://127.0.0.1:{port}", dashboard, log, STARTUP_TIMEOUT_S)
        finally:
            os.killpg(dashboard.pid, signal.SIGTERM)
            dashboard.wait(20)
            log.close()
    finally:
        subprocess.run([botrix, "server", "stop"], cwd=empty, env=env, capture_output=True, timeout=60)
    assert list(empty.iterdir()) == [], "a command wrote into the folder it was run from"
    assert _package_files(installed) == before, "a command wrote inside the installed package"
