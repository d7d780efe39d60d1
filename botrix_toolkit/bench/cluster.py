"""How much a cluster gains from spreading queues over its nodes.

Each worker process owns one queue and loops end to end: ``add_jobs(batch)``,
``dequeue_jobs(batch)``, ``complete_jobs``. The run measures completed jobs per
second with one process on one queue, then with ``queues`` processes on as many
queues whose hash tags land on different nodes. A queue's keys all live on
one node (one slot), so one queue is bounded by one node; several queues
use several nodes. On one machine the processes and the nodes share its
cores: the ratio shows how far the spread helps there, not a cluster's ceiling.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import signal
import time
import uuid
from dataclasses import dataclass
from typing import Any

from botrix_toolkit.core.cluster_routing import cluster_client
from botrix_toolkit.core.errors import OperationError
from botrix_toolkit.core.node_pipelines import queue_pipeline
from botrix_toolkit.core.queue import QueueService
from botrix_toolkit.server.local_cluster import LocalCluster, spread_prefixes

logger = logging.getLogger(__name__)

BENCH_TTL = 120  # jobs of an interrupted run expire soon


@dataclass(frozen=True)
class ClusterBenchmark:
    """End-to-end completed jobs/s: one queue (one process) vs ``queues`` queues (one process each)."""

    single_queue_jobs_per_s: float
    spread_jobs_per_s: float
    queues: int
    nodes: int
    batch: int
    measure_s: float

    @property
    def ratio(self) -> float:
        """spread / single: how many times the throughput of one queue the spread reaches."""
        if not self.single_queue_jobs_per_s:
            return 0.0
        return self.spread_jobs_per_s / self.single_queue_jobs_per_s

    def __str__(self) -> str:
        return (f"1 queue: {self.single_queue_jobs_per_s:,.0f} jobs/s; {self.queues} queues on "
                f"{self.nodes} nodes: {self.spread_jobs_per_s:,.0f} jobs/s "
                f"(x{self.ratio:.2f}; batch {self.batch}, {self.measure_s:.1f} s each)")


def _queue_worker(url: str, prefix: str, tag: str, batch: int, slot: int,
                  counters: Any, flags: Any) -> None:
    """Adds, claims and completes ``batch`` jobs per loop on one queue until flag 0 is set."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    q = QueueService.from_url(url, prefix=prefix, ttl=BENCH_TTL, cluster=True)
    made = done = 0
    flags[slot] = 1  # ready
    while not flags[0]:
        q.add_jobs([{"id": f"{tag}-{made + i}", "count": 1, "priority": i % 3}
                    for i in range(batch)])
        made += batch
        ids = [job.id for job in q.dequeue_jobs(batch)]
        if ids:
            q.complete_jobs(ids)
        done += len(ids)
        counters[slot] = done
    _delete_queue(q, tag, made)
    q.close()


def _delete_queue(q: QueueService, tag: str, made: int) -> None:
    keys = q.keys
    q.redis.delete(keys.queue, keys.processing, keys.leases, keys.sequence)
    for start in range(0, made, 5000):
        ids = [f"{tag}-{n}" for n in range(start, min(made, start + 5000))]
        pipe = queue_pipeline(q.redis, keys)
        pipe.unlink(*map(keys.data, ids), *map(keys.status, ids))
        pipe.execute()


def _measure(url: str, prefixes: list[str], batch: int, warmup_s: float, measure_s: float) -> float:
    ctx = mp.get_context("spawn")
    counters = ctx.Array("q", 1 + len(prefixes), lock=False)
    flags = ctx.Array("b", 1 + len(prefixes), lock=False)
    run = uuid.uuid4().hex[:8]
    processes = [
        ctx.Process(target=_queue_worker, daemon=True, name=f"botrix-cluster-bench-{slot}",
                    args=(url, prefix, f"bench-{run}-{slot}", batch, slot, counters, flags))
        for slot, prefix in enumerate(prefixes, start=1)
    ]
    try:
        for process in processes:
            process.start()
        deadline = time.monotonic() + 120
        while not all(flags[1:]):
            if time.monotonic() > deadline or not all(p.is_alive() for p in processes):
                raise OperationError("a cluster benchmark process did not start")
            time.sleep(0.05)
        time.sleep(warmup_s)
        done0, t0 = sum(counters[1:]), time.monotonic()
        time.sleep(measure_s)
        done1, t1 = sum(counters[1:]), time.monotonic()
    finally:
        flags[0] = 1
        for process in processes:
            if process.pid is not None:
                process.join(30)
            if process.is_alive():
                process.terminate()
                process.join(5)
    return (done1 - done0) / (t1 - t0)


def run_cluster_benchmark(
    url: str | None = None,
    queues: int = 3,
    batch: int = 200,
    measure_s: float = 3.0,
    warmup_s: float = 0.5,
) -> ClusterBenchmark:
    """Jobs/s end to end with 1 queue, then ``queues`` queues spread over the nodes.

    ``url``: any node of a cluster; without one, a 3-primary ``LocalCluster``
    is started for the run and stopped after it. Queues are named
    ``{botrix-bench-i}``-style hash tags chosen to land on different nodes;
    their keys are deleted afterwards.
    """
    local = LocalCluster(3).start() if url is None else None
    try:
        target = url or local.url  # type: ignore[union-attr]
        client = cluster_client(target)
        try:
            prefixes = spread_prefixes(client, queues, base="botrix-bench")
            nodes = len(client.get_primaries())
        finally:
            client.close()
        single = _measure(target, prefixes[:1], batch, warmup_s, measure_s)
        spread = _measure(target, prefixes, batch, warmup_s, measure_s)
    finally:
        if local is not None:
            local.stop()
    result = ClusterBenchmark(single, spread, queues, nodes, batch, measure_s)
    logger.info("cluster benchmark: %s", result)
    return result


if __name__ == "__main__":  # python -m botrix_toolkit.bench.cluster
    print(run_cluster_benchmark())
