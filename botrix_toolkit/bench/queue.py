"""Throughput of the queue operations, as ratios to raw redis-py baselines.

Every figure is measured in the same run, on the same server, against a
baseline that has the same effects written by hand with redis-py: the
machines this runs on are shared and noisy, so only ratios mean anything.
Each measurement uses a key prefix of its own and deletes it afterwards.
"""

from __future__ import annotations

import json
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from botrix_toolkit.core.cleanup import delete_keys_under
from botrix_toolkit.core.keys import QueueKeys
from botrix_toolkit.core.models import format_go_time, utc_now
from botrix_toolkit.core.queue import QueueService

# The same effects as add_jobs.lua for one job, without the toolkit's checks:
# the score at the back of the job's level from the queue's sequence counter.
RAW_ADD_LUA = """
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[4])
redis.call('SET', KEYS[3], 'pending', 'EX', ARGV[4])
redis.call('PUBLISH', ARGV[5], ARGV[6])
local n = redis.call('INCR', KEYS[4])
local k = 2 ^ 49 + math.min(n, 2 ^ 49 - 1)
redis.call('ZADD', KEYS[1], string.format('%.17g', -(tonumber(ARGV[3]) + 1) + k * 2 ^ -50), ARGV[1])
redis.call('PUBLISH', ARGV[5], ARGV[7])
return 1
"""
# The same effects as claim_jobs.lua for one job, events included byte for
# byte (the bench's ids are uuids: nothing to escape).
RAW_CLAIM_LUA = """
local popped = redis.call('ZPOPMIN', KEYS[1])
if #popped == 0 then return false end
local id = popped[1]
local data = redis.call('GET', ARGV[1] .. id)
redis.call('SADD', KEYS[2], id)
local t = redis.call('TIME')
redis.call('ZADD', KEYS[3], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), id)
redis.call('SET', ARGV[2] .. id, 'running', 'EX', ARGV[3])
redis.call('PUBLISH', ARGV[4], '{"event":"status_updated","job_id":"' .. id .. '","timestamp":' .. t[1] ..
  ',"data":{"job_id":"' .. id .. '","status":"running"}}')
return {id, data}
"""
# The same effects as set_status.lua completing one job.
RAW_COMPLETE_LUA = """
local id, ts = ARGV[1], ARGV[4]
redis.call('SET', KEYS[4], 'completed', 'EX', ARGV[2])
redis.call('PUBLISH', ARGV[3], '{"event":"status_updated","job_id":"' .. id .. '","timestamp":' .. ts ..
  ',"data":{"job_id":"' .. id .. '","status":"completed"}}')
redis.call('ZREM', KEYS[1], id)
redis.call('SREM', KEYS[2], id)
redis.call('ZREM', KEYS[3], id)
redis.call('PUBLISH', ARGV[3], '{"event":"job_completed","job_id":"' .. id .. '","timestamp":' .. ts ..
  ',"data":{"job_id":"' .. id .. '","status":"completed"}}')
return 1
"""


@dataclass(frozen=True)
class Comparison:
    """One toolkit figure beside its raw baseline, in jobs per second.

    The rates are medians over the rounds; the ratio is the median of each
    round's own ratio, toolkit and baseline measured side by side, so a slow
    moment of a shared machine that moves both leaves it alone.
    """

    name: str
    toolkit_rate: float
    baseline_name: str
    baseline_rate: float
    target_ratio: float
    round_ratios: tuple[float, ...]

    @classmethod
    def of_rounds(cls, name: str, toolkit: list[float], baseline_name: str, baseline: list[float],
                  target_ratio: float) -> Comparison:
        ratios = tuple(t / b if b else float("nan") for t, b in zip(toolkit, baseline))
        return cls(name, statistics.median(toolkit), baseline_name, statistics.median(baseline),
                   target_ratio, ratios)

    @property
    def ratio(self) -> float:
        return statistics.median(self.round_ratios)

    @property
    def meets_target(self) -> bool:
        return self.ratio >= self.target_ratio


def _rate(count: int, work: Callable[[], None]) -> float:
    started = time.perf_counter()
    work()
    return count / (time.perf_counter() - started)


def _sample_job() -> dict:
    now = format_go_time(utc_now())
    return {
        "id": str(uuid.uuid4()),
        "created_at": now,
        "updated_at": now,
        "deleted_at": None,
        "count": 10,
        "username": "bench",
        "status": "pending",
        "progress": 0,
        "successful": 0,
        "failed": 0,
        "test_mode": True,
        "priority": 1,
    }


def _event(name: str, job_id: str, priority: int | None = None) -> str:
    data: dict[str, Any] = {"job_id": job_id, "status": "pending"}
    if priority is not None:
        data["priority"] = priority
    return json.dumps({"event": name, "job_id": job_id, "timestamp": int(time.time()), "data": data})


class QueueBenchmark:
    """Runs the queue comparisons of ``botrix bench`` on one server."""

    def __init__(self, client: redis.Redis, jobs: int = 3000, bulk_jobs: int = 30_000) -> None:
        self.client = client
        self.jobs = jobs
        self.bulk_jobs = bulk_jobs
        self._raw_add = client.script_load(RAW_ADD_LUA)
        self._raw_claim = client.script_load(RAW_CLAIM_LUA)
        self._raw_complete = client.script_load(RAW_COMPLETE_LUA)

    def _fresh_keys(self) -> QueueKeys:
        return QueueKeys(f"botrix:bench:{uuid.uuid4().hex[:10]}")

    def _cleanup(self, keys: QueueKeys) -> None:
        # DEL, not UNLINK: memory freed in the background would compete with
        # the next measurement for the machine's two cores.
        delete_keys_under(self.client, f"{keys.prefix}:", unlink=False)

    def _measure(self, count: int, work: Callable[[QueueKeys], None]) -> float:
        keys = self._fresh_keys()
        try:
            return _rate(count, lambda: work(keys))
        finally:
            self._cleanup(keys)

    # -- baselines -------------------------------------------------------
    def _raw_add_args(self, keys: QueueKeys, job: dict) -> list:
        job_id = job["id"]
        return [
            4, keys.queue, keys.data(job_id), keys.status(job_id), keys.sequence,
            job_id, json.dumps(job), job["priority"], 3600, keys.updates,
            _event("status_updated", job_id), _event("job_added", job_id, job["priority"]),
        ]

    def go_style_add(self, keys: QueueKeys) -> None:
        """AddJob as the Go service does it: six commands, six round trips."""
        client = self.client
        for _ in range(self.jobs):
            job = _sample_job()
            job_id = job["id"]
            client.set(keys.data(job_id), json.dumps(job), ex=3600)
            client.set(keys.status(job_id), "pending", ex=3600)
            client.publish(keys.updates, _event("status_updated", job_id))
            client.zadd(keys.queue, {job_id: -job["priority"]})
            client.expire(keys.queue, 3600)
            client.publish(keys.updates, _event("job_added", job_id, job["priority"]))

    def raw_evalsha_add(self, keys: QueueKeys) -> None:
        for _ in range(self.jobs):
            self.client.execute_command("EVALSHA", self._raw_add, *self._raw_add_args(keys, _sample_job()))

    def raw_pipelined_add(self, keys: QueueKeys) -> None:
        for start in range(0, self.bulk_jobs, 1000):
            pipe = self.client.pipeline(transaction=False)
            for _ in range(min(1000, self.bulk_jobs - start)):
                pipe.execute_command("EVALSHA", self._raw_add, *self._raw_add_args(keys, _sample_job()))
            pipe.execute()

    def raw_cycle(self, keys: QueueKeys) -> None:
        """Dequeue and complete with two raw round trips per job."""
        for _ in range(self.jobs):
            job_id, _data = self.client.execute_command(
                "EVALSHA", self._raw_claim, 3, keys.queue, keys.processing, keys.leases,
                keys.data_prefix, keys.status_prefix, 3600, keys.updates,
            )
            job_id = job_id.decode()
            self.client.execute_command(
                "EVALSHA", self._raw_complete, 4, keys.queue, keys.processing, keys.leases,
                keys.status(job_id), job_id, 3600, keys.updates, int(time.time()),
            )

    # -- the toolkit -----------------------------------------------------
    def _service(self, keys: QueueKeys) -> QueueService:
        return QueueService(self.client, prefix=keys.prefix)

    def toolkit_add(self, keys: QueueKeys) -> None:
        q = self._service(keys)
        for _ in range(self.jobs):
            q.add_job(_sample_job())

    def toolkit_bulk_add(self, keys: QueueKeys) -> None:
        q = self._service(keys)
        q.add_jobs(_sample_job() for _ in range(self.bulk_jobs))

    def toolkit_cycle(self, keys: QueueKeys) -> None:
        q = self._service(keys)
        for _ in range(self.jobs):
            q.complete_job(q.dequeue_job().id)  # type: ignore[union-attr]  # filled with self.jobs jobs

    def toolkit_batch_cycle(self, keys: QueueKeys) -> None:
        q = self._service(keys)
        while jobs := q.dequeue_jobs(100):
            q.complete_jobs(job.id for job in jobs)

    def _filled(self, count: int, work: Callable[[QueueKeys], None]) -> Callable[[QueueKeys], None]:
        """``work`` timed on a queue that already holds ``count`` jobs."""

        def timed(keys: QueueKeys) -> None:
            self._service(keys).add_jobs(_sample_job() for _ in range(count))
            started = time.perf_counter()
            work(keys)
            self._timed_seconds = time.perf_counter() - started

        return timed

    def _measure_filled(self, work: Callable[[QueueKeys], None], count: int) -> float:
        self._measure(count, self._filled(count, work))
        return count / self._timed_seconds

    def run(self, rounds: int = 3) -> list[Comparison]:
        """Every measurement ``rounds`` times, interleaved; see Comparison for the figures."""
        # Each toolkit figure is measured right beside its baseline, in
        # alternating order from round to round (ABBA), so that a drift of
        # the machine or of the server's memory moves both alike.
        pairs = [
            [("go_style", lambda: self._measure(self.jobs, self.go_style_add))],
            [("raw_single", lambda: self._measure(self.jobs, self.raw_evalsha_add)),
             ("add", lambda: self._measure(self.jobs, self.toolkit_add))],
            [("raw_bulk", lambda: self._measure(self.bulk_jobs, self.raw_pipelined_add)),
             ("bulk", lambda: self._measure(self.bulk_jobs, self.toolkit_bulk_add))],
            [("raw_cycle", lambda: self._measure_filled(self.raw_cycle, self.jobs)),
             ("cycle", lambda: self._measure_filled(self.toolkit_cycle, self.jobs)),
             ("batch_cycle", lambda: self._measure_filled(self.toolkit_batch_cycle, self.jobs))],
        ]
        rates: dict[str, list[float]] = {name: [] for pair in pairs for name, _ in pair}
        for round_number in range(rounds):
            for pair in pairs:
                for name, measure in pair if round_number % 2 == 0 else reversed(pair):
                    rates[name].append(measure())
        return [
            Comparison.of_rounds("add_job", rates["add"], "Go-style 6 round trips", rates["go_style"], 2.5),
            Comparison.of_rounds("add_job", rates["add"], "raw EVALSHA per job", rates["raw_single"], 0.9),
            Comparison.of_rounds("add_jobs", rates["bulk"], "raw pipelined EVALSHA", rates["raw_bulk"], 0.8),
            Comparison.of_rounds("dequeue+complete", rates["cycle"], "raw 2 round trips", rates["raw_cycle"], 1.0),
            Comparison.of_rounds("dequeue_jobs(100)+complete_jobs", rates["batch_cycle"], "raw 2 round trips",
                                 rates["raw_cycle"], 1.0),
        ]
