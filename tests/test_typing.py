"""The package's types are true: mypy passes over it with pyproject.toml's [tool.mypy].

The package ships py.typed, so users' type checkers trust these annotations.
core is checked with disallow_untyped_defs; the rest with check_untyped_defs.

The wheel maps the top-level dashboard/ folder into botrix_toolkit.dashboard
(package-dir), a mapping mypy cannot follow from the repository. So the test
checks the package as it installs: a tree of symlinks, botrix_toolkit/ with
dashboard/ inside, kept in .mypy_cache/ so that the cache stays warm.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".mypy_cache"


def installed_layout() -> Path:
    """A folder holding botrix_toolkit/ as the wheel lays it out, made of symlinks to the sources."""
    tree = CACHE / "installed-layout"
    package = tree / "botrix_toolkit"
    package.mkdir(parents=True, exist_ok=True)
    wanted = {entry.name: entry for entry in (ROOT / "botrix_toolkit").iterdir() if entry.name != "__pycache__"}
    wanted["dashboard"] = ROOT / "dashboard"
    for link in package.iterdir():
        if link.name not in wanted or not link.is_symlink() or link.resolve() != wanted[link.name].resolve():
            link.unlink()
    for name, source in wanted.items():
        if not (package / name).exists():
            (package / name).symlink_to(source)
    return tree


@pytest.mark.slow
def test_mypy_passes_over_the_package_with_its_dashboard() -> None:
    tree = installed_layout()
    # -p checks every module under the package: the dashboard's too, found through the link.
    assert (tree / "botrix_toolkit" / "dashboard" / "__init__.py").is_file()
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
         "--cache-dir", str(CACHE / "installed"), "--no-error-summary", "-p", "botrix_toolkit"],
        cwd=tree, capture_output=True, text=True, timeout=900, check=False,
        env={**os.environ, "MYPYPATH": str(tree)},
    )
    assert done.returncode == 0, f"mypy found type errors:\n{done.stdout}{done.stderr}"
