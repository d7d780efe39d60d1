"""Tiny job handlers for the worker tests (run in-process and by `botrix worker`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from botrix_toolkit.core.models import Job


def echo(job: Job) -> dict:
    """Returns the job's count and username as the result."""
    return {"count": job.count, "user": job.username}


def explode(job: Job) -> None:
    """Always fails, mentioning the password to check it is blanked."""
    raise RuntimeError(f"boom for {job.username} with {job.password}")


def slow(job: Job) -> str:
    """Works for job.count tenths of a second."""
    time.sleep(job.count / 10)
    return "slept"


def nothing(job: Job) -> None:
    """Does nothing: no result is saved."""
    return None


def rendezvous(barrier: threading.Barrier) -> Callable[[Job], int]:
    """A handler that returns only once `barrier.parties` calls run at the same time."""

    def handler(job: Job) -> int:
        return barrier.wait()

    return handler


def explode_nested(job: Job) -> None:
    """Always fails, echoing secrets kept below the top level of the job."""
    raise RuntimeError(f"bad key {job.extra['meta']['api_key']} for {job.extra['meta']['creds']}")
