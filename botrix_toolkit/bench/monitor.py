"""Benchmark of ``botrix monitor``'s recording: a flat-out publisher, every event written to disk.

The same publisher as the recorder's benchmark (``bench.events``: realistic
event messages, pipelined PUBLISH from another process) runs for ``seconds``;
a ``MonitorService`` records the channel into a fresh history folder. The
result counts the messages sent, received by the recorder and written to the
dataset (read back from the folder, not from a counter), the rates over the
time from the publisher's start to the last row on disk, and the disk used per
million events as flushed and after compaction, and where the CPU went:
the monitor's threads and the server, in µs per event written. With
``metrics``, the service also counts every event for Prometheus as
``botrix monitor --metrics-port`` does (its counting thread, in the same
process), and the result says when the counting caught up and what a
scrape then showed. With ``backlog``, the monitor only records while the
publisher runs, and once every message is in writes them all in one flush:
how fast a monitor that fell behind catches up, with the machine's cores
its own (no publisher, an idle server), which the flat-out run, sharing the
cores with both, cannot show. Prints nothing.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis
from prometheus_client.parser import text_string_to_metric_families

from botrix_toolkit.core.errors import OperationError
from botrix_toolkit.frames.history import open_dataset
from botrix_toolkit.monitor.maintenance import compact
from botrix_toolkit.monitor.metrics import BackgroundCounting, metrics_for_service
from botrix_toolkit.monitor.service import MonitorService

from .cpu_time import cpu_by_thread_name, server_cpu_s, thread_cpu_s
from .events import flat_out_publisher

_WRITE_TIMEOUT_S = 300.0  # a monitor that has not written everything by then has lost it
_NEVER_S = 24 * 3600.0  # a flush interval the backlog run never reaches


def _folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*.parquet"))


def run_monitor_benchmark(url: str, seconds: float = 10.0, flush_s: float = 1.0,
                          history: str | Path | None = None, metrics: bool = False,
                          backlog: bool = False) -> dict[str, Any]:
    """Publish flat out for ``seconds`` into a monitored queue; see the module docstring.

    Returns sent, received, written, lost (sent - written), publish_rate,
    write_rate (written per second from the publisher's start to the last
    flush that wrote; with ``backlog``, over the one flush), files,
    bytes_per_million (as flushed), compacted_bytes_per_million and
    cpu_us_per_event (thread name, and "server", -> µs of CPU per event
    written, from the publisher's start to the last write); with
    ``metrics`` also counted (rows the metrics counted), count_rate (counted
    per second, over the same span ending when the counting caught up) and
    scraped_added (the ``botrix_jobs_added_total`` a scrape of ``/metrics``
    then showed).
    """
    prefix = f"botrix:bench:{uuid.uuid4().hex}"
    folder = Path(history) if history is not None else Path(tempfile.mkdtemp(prefix="botrix-bench-monitor-"))
    service = MonitorService(url, [prefix], folder, flush_s=_NEVER_S if backlog else flush_s, maintenance_s=3600)
    server = redis.Redis.from_url(url)
    threads_before, server_before = thread_cpu_s(), server_cpu_s(server)
    counting = _start_counting(service) if metrics else None
    service.start()
    try:
        with flat_out_publisher(url, f"{prefix}:updates", seconds, 0) as publisher:
            published = publisher.wait()
            started = publisher.started
            sent = published["sent"]
            backlog_flush_cpu_s = 0.0
            if backlog:
                # Polled finely: the backlog's flush is timed from here.
                started = _when(lambda: service.health()["events_received"] >= sent, poll_s=0.01)
                backlog_flush_cpu_s = _flush_on_a_thread(service)
            last_written, last_change = -1, time.perf_counter()
            deadline = time.perf_counter() + _WRITE_TIMEOUT_S
            while time.perf_counter() < deadline:
                written = service.health()["events_written"]
                if written != last_written:
                    last_written, last_change = written, time.perf_counter()
                if written >= sent:
                    break
                time.sleep(0.05)
            finished = last_change
            received = service.health()["events_received"]
            if counting is not None:
                counted_at = _when(lambda: counting.events_counted >= received, poll_s=0.05)
                scraped_added = _scraped(counting.metrics.url, "botrix_jobs_added_total", prefix)
            # Before the stop: its threads end with it.
            cpu_s = cpu_by_thread_name(threads_before, thread_cpu_s())
            cpu_s["botrix-monitor-flush"] = cpu_s.get("botrix-monitor-flush", 0.0) + backlog_flush_cpu_s
            cpu_s["server"] = server_cpu_s(server) - server_before
    finally:
        server.close()
        service.stop()
        if counting is not None:
            counting.close()
            counting.metrics.close()
    try:
        written = open_dataset(folder).count_rows()
        files = len(list((folder / "events").rglob("*.parquet")))
        flushed_bytes = _folder_bytes(folder / "events")
        compact(folder, datetime.now(UTC) + timedelta(days=1), timedelta(0), threading.Lock())
        compacted_bytes = _folder_bytes(folder / "events")
        assert open_dataset(folder).count_rows() == written, "compaction changed the row count"
    finally:
        if history is None:
            shutil.rmtree(folder, ignore_errors=True)
    elapsed = finished - started if backlog else max(finished - started, published["seconds"])
    measured = {
        "seconds": seconds,
        "sent": sent,
        "received": received,
        "written": written,
        "lost": sent - written,
        "publish_rate": sent / published["seconds"] if published["seconds"] else 0.0,
        "write_rate": written / elapsed if elapsed else 0.0,
        "files": files,
        "bytes_per_million": flushed_bytes / written * 1e6 if written else 0.0,
        "compacted_bytes_per_million": compacted_bytes / written * 1e6 if written else 0.0,
        "cpu_us_per_event": {name: seconds / written * 1e6 if written else 0.0
                             for name, seconds in sorted(cpu_s.items(), key=lambda item: -item[1])},
    }
    if counting is not None:
        counted_span = max(counted_at - started, published["seconds"])
        measured.update(counted=counting.events_counted, scraped_added=scraped_added,
                        count_rate=counting.events_counted / counted_span if counted_span else 0.0)
    return measured


def _start_counting(service: MonitorService) -> BackgroundCounting:
    """The metrics path of ``botrix monitor --metrics-port``, served on a free loopback port."""
    counting = BackgroundCounting(metrics_for_service(service))
    service.observers.append(counting)
    counting.metrics.serve("127.0.0.1", 0)
    counting.metrics.start_refreshing()  # the gauges' round trip every few seconds, as in service
    return counting


def _when(reached: Callable[[], bool], poll_s: float) -> float:
    """The time ``reached()`` first held, polled every ``poll_s`` (or when waiting gave up)."""
    deadline = time.perf_counter() + _WRITE_TIMEOUT_S
    while not reached() and time.perf_counter() < deadline:
        time.sleep(poll_s)
    return time.perf_counter()


def _flush_on_a_thread(service: MonitorService) -> float:
    """``service.flush()`` on a thread of its own, as the service flushes; returns that thread's CPU seconds."""
    cpu_s: list[float] = []

    def flush() -> None:
        service.flush()
        cpu_s.append(time.thread_time())

    thread = threading.Thread(target=flush, name="botrix-monitor-backlog-flush")
    thread.start()
    thread.join()
    if not cpu_s:
        raise OperationError("the backlog flush failed: see the log")
    return cpu_s[0]


def _scraped(url: str | None, name: str, prefix: str) -> float:
    """The sum of a metric's samples of the queue ``prefix`` on a scrape of ``url``."""
    assert url is not None, "the metrics are not served"
    with urllib.request.urlopen(url, timeout=30) as response:
        text = response.read().decode()
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == name and sample.labels.get("queue") == prefix)
