"""``botrix simulate --max``: the highest sustained end-to-end throughput of this machine.

One producer keeps a backlog of jobs and N worker processes claim and
complete them in batches (dequeue_jobs + complete_jobs), for a few seconds
per batch size; then the same process layout runs a raw redis-py baseline
with the same effects (pipelined commands, no toolkit code). The rate is the
smaller of the added and completed rates, so a draining backlog cannot
inflate it; the ratio to the baseline is what to read on a noisy machine.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import random
import signal
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from botrix_toolkit.core.errors import OperationError
from botrix_toolkit.core.queue import QueueService
from botrix_toolkit.sim.processes import SharedFlag, as_queue, process_url
from botrix_toolkit.sim.scenarios import job_id

logger = logging.getLogger(__name__)


MAX_BACKLOG = 10_000  # the producer keeps up to this many jobs queued
MAX_ADD_CHUNK = 1000
MAX_TTL = 600  # measurement jobs expire soon even if the cleanup is interrupted


@dataclass(frozen=True)
class MaxThroughput:
    """Completed jobs per second end to end (add, claim, complete), toolkit vs raw redis-py.

    ``toolkit_jobs_per_s`` is the best over the batch sizes tried
    (``tried``: batch -> jobs/s); the baseline is measured at that batch size.
    """

    toolkit_jobs_per_s: float
    baseline_jobs_per_s: float
    workers: int
    batch: int
    measure_s: float
    tried: Mapping[int, float] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """toolkit / baseline: 1.0 means no cost over hand-written commands."""
        if not self.baseline_jobs_per_s:
            return 0.0
        return self.toolkit_jobs_per_s / self.baseline_jobs_per_s


def _max_job(rng: random.Random, tag: str, n: int) -> dict[str, Any]:
    return {"id": job_id(tag, n), "count": rng.randint(1, 100),
            "username": f"user{rng.randrange(500):04d}", "password": "pw-not-shown",
            "test_mode": False, "priority": rng.choice((0, 1, 1, 2))}


def _max_producer(url: str, prefix: str, raw: bool, tag: str, counters: Any, flags: Any) -> None:
    """Keeps the queue near MAX_BACKLOG jobs, adding MAX_ADD_CHUNK per round trip."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    q = QueueService.from_url(url, prefix=prefix, ttl=MAX_TTL)
    keys, rng, made = q.keys, random.Random(0), 0
    stop = SharedFlag(flags, 0)
    while not stop.is_set():
        if q.redis.zcard(keys.queue) >= MAX_BACKLOG:
            time.sleep(0.002)
            continue
        jobs = [_max_job(rng, tag, made + i) for i in range(MAX_ADD_CHUNK)]
        if raw:
            _raw_add(q, jobs)
        else:
            q.add_jobs(jobs)
        made += len(jobs)
        counters[0] = made
    q.close()


def _max_worker(url: str, prefix: str, raw: bool, slot: int, batch: int,
                counters: Any, flags: Any) -> None:
    """Claims ``batch`` jobs per round trip and completes them in one more, until stopped."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    q = QueueService.from_url(url, prefix=prefix, ttl=MAX_TTL)
    stop, done = SharedFlag(flags, 0), 0
    SharedFlag(flags, slot).set()  # ready (slots start at 1; flag 0 is stop)
    while not stop.is_set():
        if raw:
            ids = _raw_claim_and_complete(q, batch)
        else:
            ids = [job.id for job in q.dequeue_jobs(batch)]
            if ids:
                q.complete_jobs(ids)
        if not ids:
            time.sleep(0.001)
        done += len(ids)
        counters[slot] = done
    q.close()


def _event(name: str, job: str, status: str, priority: int | None = None) -> str:
    extra = f',"priority":{priority}' if priority is not None else ""
    return (f'{{"event":"{name}","job_id":"{job}","timestamp":{int(time.time())},'
            f'"data":{{"job_id":"{job}","status":"{status}"{extra}}}}}')


def _raw_add(q: QueueService, jobs: list[dict[str, Any]]) -> None:
    """The effects of add_jobs with plain pipelined commands (Go's AddJob order)."""
    keys, ttl, pipe = q.keys, q.ttl, q.redis.pipeline(transaction=False)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for job in jobs:
        body = json.dumps({"id": job["id"], "created_at": now, "updated_at": now,
                           "deleted_at": None,
                           "count": job["count"], "username": job["username"],
                           "password": job["password"], "status": "pending", "progress": 0,
                           "successful": 0, "failed": 0, "test_mode": job["test_mode"],
                           "priority": job["priority"]}, separators=(",", ":"))
        pipe.set(keys.data(job["id"]), body, ex=ttl)
        pipe.set(keys.status(job["id"]), "pending", ex=ttl)
        pipe.publish(keys.updates, _event("status_updated", job["id"], "pending"))
        pipe.zadd(keys.queue, {job["id"]: -job["priority"]})
        pipe.publish(keys.updates, _event("job_added", job["id"], "pending", job["priority"]))
    pipe.execute()


def _raw_claim_and_complete(q: QueueService, batch: int) -> list[str]:
    """The effects of dequeue_jobs + complete_jobs with plain commands: three round trips."""
    keys, ttl, client = q.keys, q.ttl, q.redis
    popped = client.zpopmin(keys.queue, batch)
    if not popped:
        return []
    ids = [member.decode() for member, _ in popped]  # type: ignore[union-attr,str-unpack]  # bytes client
    pipe = client.pipeline(transaction=False)
    pipe.mget([keys.data(i) for i in ids])
    pipe.sadd(keys.processing, *ids)
    pipe.zadd(keys.leases, {i: 0 for i in ids})
    for i in ids:
        pipe.set(keys.status(i), "running", ex=ttl)
        pipe.publish(keys.updates, _event("status_updated", i, "running"))
    data = pipe.execute()[0]
    [json.loads(body) for body in data if body is not None]  # a worker reads its jobs
    pipe = client.pipeline(transaction=False)
    for i in ids:
        pipe.set(keys.status(i), "completed", ex=ttl)
        pipe.publish(keys.updates, _event("status_updated", i, "completed"))
    pipe.zrem(keys.queue, *ids)
    pipe.srem(keys.processing, *ids)
    pipe.zrem(keys.leases, *ids)
    for i in ids:
        pipe.publish(keys.updates, _event("job_completed", i, "completed"))
    pipe.execute()
    return ids


def _measure_max_once(url: str, prefix: str, raw: bool, workers: int, batch: int,
                      warmup_s: float, measure_s: float) -> float:
    ctx = mp.get_context("spawn")
    tag = f"max-{uuid.uuid4().hex[:8]}"
    run_prefix = f"{prefix}:{tag}"
    counters = ctx.Array("q", 1 + workers, lock=False)
    flags = ctx.Array("b", 1 + workers, lock=False)
    processes = [ctx.Process(target=_max_worker, daemon=True, name=f"botrix-max-worker-{slot}",
                             args=(url, run_prefix, raw, slot, batch, counters, flags))
                 for slot in range(1, workers + 1)]
    processes.append(ctx.Process(target=_max_producer, daemon=True, name="botrix-max-producer",
                                 args=(url, run_prefix, raw, tag, counters, flags)))
    q = QueueService.from_url(url, prefix=run_prefix, ttl=MAX_TTL)
    try:
        for process in processes:
            process.start()
        ready = [SharedFlag(flags, slot) for slot in range(1, workers + 1)]
        deadline = time.monotonic() + 120
        # Workers ready and the producer's first chunk in: on a busy machine a
        # spawned process takes seconds to start, which a warm-up must not count.
        while not (all(flag.is_set() for flag in ready) and counters[0] > 0):
            if time.monotonic() > deadline or not all(p.is_alive() for p in processes):
                raise OperationError("a --max measurement process did not start")
            time.sleep(0.05)
        time.sleep(warmup_s)
        added0, done0, t0 = counters[0], sum(counters[1:]), time.monotonic()
        time.sleep(measure_s)
        # Counters move a chunk at a time: on a loaded machine one chunk can take
        # longer than the window, so the window lasts until both have moved.
        while counters[0] == added0 or sum(counters[1:]) == done0:
            if time.monotonic() > deadline or not all(p.is_alive() for p in processes):
                raise OperationError("a --max measurement made no progress")
            time.sleep(0.01)
        added1, done1, t1 = counters[0], sum(counters[1:]), time.monotonic()
    finally:
        SharedFlag(flags, 0).set()
        for process in processes:
            if process.pid is not None:
                process.join(10)
            if process.is_alive():
                process.terminate()
        _delete_run(q, tag, counters[0])
        q.close()
    # Sustained: a shrinking backlog would let completions outrun production
    # for a while, so the slower of the two is the rate the pipeline holds.
    return min(added1 - added0, done1 - done0) / (t1 - t0)


def _delete_run(q: QueueService, tag: str, added: int) -> None:
    """Removes every key of a --max measurement."""
    keys = q.keys
    q.redis.delete(keys.queue, keys.processing, keys.leases, keys.sequence)
    for start in range(0, added, 10_000):
        ids = [job_id(tag, n) for n in range(start, min(added, start + 10_000))]
        q.redis.unlink(*map(keys.data, ids), *map(keys.status, ids))


def measure_max_throughput(
    q_or_url: QueueService | str | None = None,
    workers: int = 2,
    batches: int | tuple[int, ...] = (100, 500, 1000),
    measure_s: float = 5.0,
    warmup_s: float = 1.0,
    prefix: str = "botrix:max",
) -> MaxThroughput:
    """The highest end-to-end jobs/s with one producer and ``workers`` worker
    processes over the ``batches`` tried, then the same layout at the best batch
    with raw redis-py commands (same effects, no toolkit code).

    The producer keeps up to 10,000 jobs queued (``add_jobs``, 1,000 per round
    trip); each worker loops ``dequeue_jobs(batch)`` + ``complete_jobs``. Each
    run counts jobs added and completed over ``measure_s`` after ``warmup_s``
    and keeps the smaller rate (what the whole pipeline sustains), under a key
    prefix of its own (below ``prefix``) that is deleted afterwards.
    """
    batches = (batches,) if isinstance(batches, int) else tuple(batches)
    q, own_q = as_queue(q_or_url, None)
    try:
        url = process_url(q)
    finally:
        if own_q:
            q.close()
    tried = {batch: _measure_max_once(url, prefix, False, workers, batch, warmup_s, measure_s)
             for batch in batches}
    best = max(tried, key=tried.__getitem__)
    logger.info("--max: toolkit jobs/s by batch size: %s", tried)
    baseline = _measure_max_once(url, prefix, True, workers, best, warmup_s, measure_s)
    return MaxThroughput(tried[best], baseline, workers, best, measure_s, tried)
