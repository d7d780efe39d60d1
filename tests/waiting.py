"""Waiting for a condition in a test: a guard against hanging, never a speed assertion."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from collections.abc import Callable
from typing import IO

# An upper bound for any condition on a loaded machine; a passing test never waits it out.
WAIT_S = 60.0


def wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT_S,
             process: subprocess.Popen | None = None) -> None:
    """Polls ``condition`` every 20 ms; AssertionError naming ``what`` after ``timeout`` seconds.

    With ``process``, also fails (with its stderr) as soon as that process
    exits before the condition holds.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            stderr = process.stderr.read() if process.stderr is not None else ""
            raise AssertionError(f"process exited ({process.returncode}) before {what}: {stderr}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def wait_for_dashboard(url: str, process: subprocess.Popen, log: IO[str], timeout: float) -> None:
    """Waits until the dashboard at ``url`` answers its health check with ``ok``.

    Fails with the end of the process's ``log`` when it exits first or ``timeout`` passes.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                if reply.read() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.3)
    log.seek(0)
    state = f"exited with {process.returncode}" if process.poll() is not None else f"not up after {timeout} s"
    raise AssertionError(f"the dashboard at {url} {state}:\n{log.read()[-3000:]}")
