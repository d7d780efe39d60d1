"""The threads that help a monitor's flush along: one per core this process may use.

A flush parses a drain's chunks side by side on them (``event_tables``), and
works out the batch's rollups on one while the flush thread writes its files
(``service``). Arrow's and numpy's kernels let go of the GIL for the heavy
steps, so a monitor that falls behind catches up on every core, not on one.
One pool per process, shared by every monitor in it; a forked child makes
its own, as it has none of the parent's threads.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

_MAX_THREADS = 8  # past this, the flush's own single-threaded steps dominate anyway


@functools.cache
def flush_helpers() -> ThreadPoolExecutor:
    """The process's pool of flush helper threads (named ``botrix-flush-helper_<n>``)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return ThreadPoolExecutor(max_workers=min(cores, _MAX_THREADS), thread_name_prefix="botrix-flush-helper")


if hasattr(os, "register_at_fork"):  # work handed to the parent's threads would wait forever
    os.register_at_fork(after_in_child=flush_helpers.cache_clear)
