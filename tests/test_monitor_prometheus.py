"""The shipped Prometheus files against Debian's real promtool and prometheus (`apt-get install prometheus`).

The rules pass ``promtool check rules``; a real Prometheus server loads the
shipped scrape config and rules, scrapes MonitorMetrics on loopback, and its
query API returns the queue's own counts.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.parse
import urllib.request
from importlib import resources
from pathlib import Path

from botrix_toolkit.core.queue import QueueService
from botrix_toolkit.monitor.metrics import MonitorMetrics
from botrix_toolkit.server.ports import free_port

PROMTOOL = "/usr/bin/promtool"
PROMETHEUS = "/usr/bin/prometheus"
WAIT_S = 90.0  # a guard against hanging, never a speed assertion
SHIPPED = resources.files("botrix_toolkit.data") / "prometheus"


def shipped(name: str) -> str:
    return (SHIPPED / name).read_text(encoding="utf-8")


def test_promtool_accepts_the_shipped_rules_and_config(tmp_path: Path) -> None:
    for name in ("alerts.yml", "prometheus.yml"):
        (tmp_path / name).write_text(shipped(name), encoding="utf-8")
    rules = subprocess.run([PROMTOOL, "check", "rules", str(tmp_path / "alerts.yml")],
                           capture_output=True, text=True, timeout=60)
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert "SUCCESS: 7 rules found" in rules.stdout
    config = subprocess.run([PROMTOOL, "check", "config", str(tmp_path / "prometheus.yml")],
                            capture_output=True, text=True, timeout=60)
    assert config.returncode == 0, config.stdout + config.stderr


def test_each_alert_fires_as_described_in_promtools_rule_tests(tmp_path: Path) -> None:
    (tmp_path / "alerts.yml").write_text(shipped("alerts.yml"), encoding="utf-8")
    rule_tests = tmp_path / "alerts_test.yml"
    rule_tests.write_text((Path(__file__).parent / "data" / "alerts_test.yml").read_text(encoding="utf-8"),
                          encoding="utf-8")
    result = subprocess.run([PROMTOOL, "test", "rules", str(rule_tests)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


def test_the_alerts_name_only_metrics_the_monitor_serves(queue: QueueService) -> None:
    metrics = MonitorMetrics([queue])
    metrics.refresh()
    metrics.set_health(queue.keys.prefix, {"events_received": 0, "gaps": 0, "malformed": 0, "flush_lag_s": 0})
    served = {sample.name for family in metrics.registry.collect() for sample in family.samples}
    named = set(re.findall(r"\bbotrix_\w+", shipped("alerts.yml")))
    assert named and named <= served, named - served


def query(port: int, expression: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_a_real_prometheus_scrapes_the_queue_counts(queue: QueueService, tmp_path: Path) -> None:
    queue.add_jobs({"priority": 2} for _ in range(7))
    queue.add_jobs({"priority": 0} for _ in range(3))
    queue.dequeue_jobs(2)
    stats = queue.get_queue_stats()

    with MonitorMetrics([queue]) as metrics:
        metrics.start_refreshing(0.5)
        metrics_url = metrics.serve()
        target = urllib.parse.urlsplit(metrics_url).netloc
        # The shipped config and rules, scraping this monitor every second.
        config = shipped("prometheus.yml").replace("127.0.0.1:9108", target)
        config = config.replace("scrape_interval: 15s", "scrape_interval: 1s")
        assert target in config and "scrape_interval: 1s" in config
        (tmp_path / "prometheus.yml").write_text(config, encoding="utf-8")
        (tmp_path / "alerts.yml").write_text(shipped("alerts.yml"), encoding="utf-8")
        port = free_port()
        log = (tmp_path / "prometheus.log").open("w")
        server = subprocess.Popen(
            [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            name = queue.keys.prefix
            expression = f'botrix_queue_pending_jobs{{queue="{name}"}}'
            found: dict[str, float] = {}
            deadline = time.monotonic() + WAIT_S
            while time.monotonic() < deadline and len(found) < 3:
                assert server.poll() is None, (tmp_path / "prometheus.log").read_text()
                try:
                    found = {r["metric"]["priority"]: float(r["value"][1]) for r in query(port, expression)}
                except OSError:
                    pass  # not listening yet
                time.sleep(0.2)
            assert found == {"high": stats["high_priority"], "normal": stats["normal_priority"],
                             "low": stats["low_priority"]}, (tmp_path / "prometheus.log").read_text()
            assert found == {"high": 5.0, "normal": 0.0, "low": 3.0}
            processing = query(port, f'botrix_queue_processing_jobs{{queue="{name}"}}')
            assert float(processing[0]["value"][1]) == stats["processing_count"] == 2
            # The shipped rules were loaded and are evaluated.
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/rules", timeout=5) as response:
                groups = json.loads(response.read())["data"]["groups"]
            assert {rule["name"] for group in groups for rule in group["rules"]} >= {
                "BotrixQueueBackingUp", "BotrixOldestPendingJobTooOld", "BotrixStalledJobs",
                "BotrixMonitorNotReceiving", "BotrixMonitorNotWriting"}
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=20)
            log.close()
