"""``botrix monitor --metrics-port`` as a real subprocess: its /metrics shows the queue and its events."""

from __future__ import annotations

import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from botrix_toolkit.core.keys import QueueKeys
from botrix_toolkit.core.queue import QueueService
from botrix_toolkit.server.ports import free_port
from tests import waiting
from tests.test_monitor import Monitor, start

WAIT_S = 60.0  # a guard against hanging, never a speed assertion


@pytest.fixture
def monitors() -> Iterator[list[Monitor]]:
    """The monitor processes a test starts; any still running at the end is killed."""
    started: list[Monitor] = []
    yield started
    for monitor in started:
        monitor.kill_if_running()


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
    except OSError:
        return {}
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.mark.slow
def test_botrix_monitor_serves_metrics_on_its_metrics_port(
        redis_url: str, queue: QueueService, key_prefix: str, tmp_path: Path, monitors: list[Monitor]) -> None:
    port = free_port()
    other = key_prefix + ":other"  # a second queue, sent one message that is not an event
    monitor = start(monitors, redis_url, f"{key_prefix},{other}", tmp_path, "--metrics-port", str(port))
    url = f"http://127.0.0.1:{port}/metrics"
    waiting.wait_for(lambda: f"metrics at {url}" in monitor.log.read_text(), "the start line naming the URL",
                     WAIT_S)
    queue.add_jobs({"priority": 1} for _ in range(30))
    queue.complete_jobs(job.id for job in queue.dequeue_jobs(12))
    queue.redis.publish(QueueKeys(other).updates, b"not an event")

    def labelled(name: str, prefix: str = key_prefix, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        return name, tuple(sorted({"queue": prefix, **labels}.items()))

    expected = {
        labelled("botrix_queue_pending_jobs", priority="normal"): 18,
        labelled("botrix_queue_processing_jobs"): 0,
        labelled("botrix_jobs_added_total", priority="normal"): 30,
        labelled("botrix_jobs_completed_total", priority="normal"): 12,
        labelled("botrix_job_wait_seconds_count", priority="normal"): 12,
        labelled("botrix_monitor_events_received_total"): 30 * 2 + 12 * 3,
        labelled("botrix_monitor_malformed_total"): 0,
        # Each queue's health is its own recorder's.
        labelled("botrix_monitor_events_received_total", other): 1,
        labelled("botrix_monitor_malformed_total", other): 1,
        labelled("botrix_monitor_gaps_total", other): 0,
    }
    waiting.wait_for(lambda: all(scrape(url).get(key) == value for key, value in expected.items()),
                     f"{expected} on {url}", WAIT_S)
    assert monitor.stop(signal.SIGTERM) == 0
    assert scrape(url) == {}  # the process has ended: nothing listens
