"""Where a benchmark's CPU went: this process's threads, by name, and the Redis server.

A rate says how fast; these say which part of the work was the cost, so a
figure like "the flush thread spends 2.3 µs of CPU per event" can be checked
by anyone with ``botrix bench``. Thread times are read from Linux's
``/proc/self/task``; elsewhere there are none, and the server's own figure
(``INFO cpu``) still is.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import redis

_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_POOL_NUMBER = re.compile(r"_[0-9]+$")  # ThreadPoolExecutor names its threads <prefix>_<n>


def thread_cpu_s() -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) of each live thread but the main one: native id -> (name, seconds)."""
    times: dict[int, tuple[str, float]] = {}
    main = threading.main_thread()
    for thread in threading.enumerate():
        if thread is main or thread.native_id is None:
            continue
        try:
            stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
        except OSError:  # not Linux, or the thread has just ended
            continue
        # Fields after the command name, which is in parentheses and may hold spaces.
        fields = stat.rsplit(")", 1)[1].split()
        times[thread.native_id] = (thread.name, (int(fields[11]) + int(fields[12])) / _TICKS_PER_S)
    return times


def cpu_by_thread_name(before: dict[int, tuple[str, float]],
                       after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds spent between two ``thread_cpu_s`` snapshots, summed by thread name.

    A pool's numbered threads (``botrix-flush-helper_0``, ``_1``...) count as one name.
    """
    spent: dict[str, float] = {}
    for native_id, (name, seconds) in after.items():
        group = _POOL_NUMBER.sub("", name)
        earlier = before.get(native_id)
        start = earlier[1] if earlier is not None and earlier[0] == name else 0.0  # else a new thread, id reused
        spent[group] = spent.get(group, 0.0) + seconds - start
    return spent


def server_cpu_s(client: redis.Redis) -> float:
    """The server's CPU seconds (user + system) since it started, as ``INFO cpu`` gives them."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
