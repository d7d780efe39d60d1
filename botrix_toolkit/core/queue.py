"""QueueService: the botrix queue operations, wire-compatible with the Go service.

Every operation that writes more than one key is one Lua script
(scripting.py), so a crash at any instant leaves each job wholly before or
wholly after it. Read-only views live in queries.py.
"""

from __future__ import annotations

import dataclasses
import html
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

import redis

from botrix_toolkit.core import arguments, queries
from botrix_toolkit.core.clients import (
    RedisClient,
    get_raw,
    require_client,
    set_raw,
    smembers_raw,
    zrange_raw,
)
from botrix_toolkit.core.cluster_routing import (
    cluster_client,
    is_cluster_client,
    require_hash_tag,
    server_is_cluster,
)
from botrix_toolkit.core.errors import (
    BotrixError,
    CorruptJobError,
    InvalidInputError,
    JobNotFoundError,
    JobStateError,
    WrongKeyTypeError,
)
from botrix_toolkit.core.json_depth import MAX_JSON_DEPTH, nests_too_deep, too_deep_message
from botrix_toolkit.core.keys import DEFAULT_PREFIX, QueueKeys
from botrix_toolkit.core.models import (
    Job,
    JobStatus,
    Priority,
    new_job_id,
    plain_job_json,
    utc_now,
    validate_job_id,
)
from botrix_toolkit.core.node_pipelines import run_on_queue_node
from botrix_toolkit.core.packed_calls import PackedCalls, packed_evalsha
from botrix_toolkit.core.reconnect import ReconnectRetry
from botrix_toolkit.core.redaction import SECRET_FIELDS, redact_url
from botrix_toolkit.core.scripting import LuaScript, Scripts, as_text, translated_errors
from botrix_toolkit.core.server_url import check_server_url

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

DEFAULT_TTL = 3600
# Jobs per add_jobs script call, and script calls per round trip: large
# enough to amortise the round trip, small enough not to block the server.
ADD_BATCH = 100
ADD_CALLS_PER_ROUND_TRIP = 10
# Ids per set_status call when clearing or finishing many jobs.
STATUS_BATCH = 500
# Every claimed job's status, looked up once rather than through the enum per job.
_RUNNING = JobStatus.RUNNING.value
# set_status's answer for one id (set_status.lua); script replies are always bytes (clients.py).
_CHANGED, _WRONG_TYPE = b"c", b"w"
# Orphans and finished ids one claim may pop before it returns to the caller.
CLAIM_EXTRA_POPS = 1000


ProgressCallback = Callable[[int, int], object]  # (done, total); what it returns is ignored


class QueueService:
    """The botrix job queue on one Redis or Valkey server, under one key prefix."""

    def __init__(
        self,
        client: RedisClient,
        prefix: str = DEFAULT_PREFIX,
        ttl: int = DEFAULT_TTL,
        url: str | None = None,
    ) -> None:
        ttl = arguments.whole_number("ttl", ttl, 1)  # seconds, as Redis's EX takes them
        # Any redis-py client, decoding or not: the toolkit reads every reply as bytes (clients.py).
        client = require_client(client)
        if is_cluster_client(client):
            require_hash_tag(prefix)
        self.redis = client
        self.keys = QueueKeys(prefix)
        self.ttl = ttl
        self.url = url
        self._server = url or _describe_client(client)
        self._scripts = Scripts(client)
        # The hot single-job calls (claim one, finish one) skip execute_command (packed_calls.py).
        self._packed = PackedCalls(client)
        self._claim_one_packed: bytes | None = None
        # Built once: a worker claims and completes a job on every iteration.
        self._script_head_errors = translated_errors(self._server, self.keys.script_head)

    @classmethod
    def from_url(
        cls,
        url: str,
        prefix: str = DEFAULT_PREFIX,
        ttl: int = DEFAULT_TTL,
        *,
        socket_timeout: float = 10.0,
        cluster: bool | None = None,
        **redis_kwargs: Any,
    ) -> QueueService:
        """A service on the server at ``url`` (``redis://``, ``rediss://``, ``unix://``).

        ``cluster``: True for a Redis Cluster (any node's URL), False for a
        single server, None to ask the server (INFO cluster). On a cluster the
        prefix must carry a hash tag, e.g. ``"{botrix:jobs}"`` (core/cluster_routing.py).
        A refused or dropped connection is retried for ``RECONNECT_WINDOW_S``
        (core/reconnect.py: a restarting server is waited for); a timeout is
        not, so a server that stops answering fails the call after
        ``socket_timeout`` seconds; a refused login or certificate fails at
        once. A URL that cannot be used raises InvalidInputError (server_url.py).
        """
        check_server_url(url)
        redis_kwargs.setdefault("socket_connect_timeout", 5.0)
        if cluster is None:
            cluster = server_is_cluster(url, socket_timeout=socket_timeout, **redis_kwargs)
        if cluster:
            require_hash_tag(prefix)
            client: RedisClient = cluster_client(url, socket_timeout=socket_timeout, **redis_kwargs)
        else:
            redis_kwargs.setdefault("retry", ReconnectRetry())
            client = redis.Redis.from_url(
                url,
                socket_timeout=socket_timeout,
                health_check_interval=redis_kwargs.pop("health_check_interval", 15),
                **redis_kwargs,
            )
        return cls(client, prefix=prefix, ttl=ttl, url=redact_url(url))

    def __repr__(self) -> str:
        return f"QueueService({self._server!r}, prefix={self.keys.prefix!r})"

    def errors_for(self, *keys: str) -> translated_errors:
        """A context manager that turns redis-py errors on ``keys`` into the toolkit's, naming them.

        For code beside the queue (frames, groups) that reads its keys itself.
        """
        return translated_errors(self._server, keys)

    # -- adding ----------------------------------------------------------
    def add_job(self, job: Job | Mapping[str, Any]) -> str:
        """Adds one job (a Job or a dict); returns its id, made (uuid4) when missing."""
        prepared = _prepare_for_add(job)
        self._write_added([prepared])
        return prepared[0]

    def enqueue_job(self, job: Job | Mapping[str, Any]) -> None:
        """The Go name of add_job."""
        self.add_job(job)

    def add_jobs(
        self, jobs: Iterable[Job | Mapping[str, Any]], progress: ProgressCallback | None = None
    ) -> list[str]:
        """Adds many jobs in pipelined batches, with add_job's effects for each.

        Every job is validated before the first is written: one bad job
        raises InvalidInputError naming its position, and nothing is added.
        ``progress(done, total)`` is called after each round trip.
        """
        prepared = []
        for position, job in enumerate(jobs):
            try:
                prepared.append(_prepare_for_add(job))
            except InvalidInputError as exc:
                raise InvalidInputError(f"job #{position}: {exc}") from None
        self._write_added(prepared, progress)
        return [job_id for job_id, _, _ in prepared]

    def _write_added(
        self, prepared: Sequence[tuple[str, str, int]], progress: ProgressCallback | None = None
    ) -> None:
        keys, total = self.keys, len(prepared)
        if total == 1 and progress is None:
            # One job, one round trip: the common add_job, kept short.
            job_id, body, priority = prepared[0]
            with self.errors_for(keys.queue, keys.sequence):
                self._call_script(
                    self._scripts.add_jobs,
                    (keys.queue, keys.sequence, keys.data(job_id), keys.status(job_id)),
                    (self.ttl, keys.updates, int(time.time()), job_id, body, priority),
                )
            return
        per_round_trip = ADD_BATCH * ADD_CALLS_PER_ROUND_TRIP
        with self.errors_for(keys.queue, keys.sequence):
            for start in range(0, total, per_round_trip):
                round_trip = prepared[start : start + per_round_trip]
                calls: list[tuple[list[str], list[Any]]] = []  # (keys, args) of each script call
                for offset in range(0, len(round_trip), ADD_BATCH):
                    script_keys = [keys.queue, keys.sequence]
                    script_args: list[Any] = [self.ttl, keys.updates, int(time.time())]
                    for job_id, body, priority in round_trip[offset : offset + ADD_BATCH]:
                        script_keys += (keys.data(job_id), keys.status(job_id))
                        script_args += (job_id, body, priority)
                    calls.append((script_keys, script_args))
                if len(calls) == 1:
                    self._call_script(self._scripts.add_jobs, *calls[0])  # one call: no pipeline needed
                else:
                    self._call_script_many(self._scripts.add_jobs, calls)
                if progress is not None:
                    progress(min(start + per_round_trip, total), total)

    def _call_script(self, script: LuaScript, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """The script's raw reply: pre-packed in C on a plain client (packed_calls.py), else through redis-py.

        redis-py packs each of a batch's thousand arguments in Python; the
        packed call costs a fraction of that, and of a single call's overhead.
        """
        if not self._packed.usable:
            return script(keys=keys, args=args)
        try:
            return self._packed.evalsha(packed_evalsha(self._packed, script.sha, keys, args), script.script)
        except redis.ResponseError as error:
            script.name_lines(error)
            raise

    def _call_script_many(self, script: LuaScript, calls: Sequence[tuple[Sequence[Any], Sequence[Any]]]) -> list[Any]:
        """The raw replies of several calls of one script, (keys, args) each, in one round trip.

        Pre-packed on a plain client, as ``_call_script``; the calls the
        server refused for want of the script (flushed, restarted) are sent
        again once it is loaded, and only those: a call that ran is not
        repeated for it.
        """
        if not self._packed.usable:
            return run_on_queue_node(self.redis, self.keys, [partial(script, k, a) for k, a in calls])
        packed = [packed_evalsha(self._packed, script.sha, k, a) for k, a in calls]
        replies = self._packed.call_many(packed, raise_errors=False)
        unknown = [index for index, reply in enumerate(replies) if isinstance(reply, redis.exceptions.NoScriptError)]
        if unknown:
            self.redis.script_load(script.script)
            for index, reply in zip(unknown, self._packed.call_many([packed[i] for i in unknown], raise_errors=False)):
                replies[index] = reply
        for reply in replies:
            if isinstance(reply, redis.ResponseError):
                script.name_lines(reply)
                raise reply
        return replies

    # -- taking and finishing --------------------------------------------
    def dequeue_job(self) -> Job | None:
        """Claims the next job, or None when empty.

        Highest priority first; within a priority, first in, first out for
        the jobs the toolkit added (docs/wire-format.md, "Scores"), and those
        ahead of the Go service's own adds of that priority.
        """
        jobs = self.dequeue_jobs(1)
        return jobs[0] if jobs else None

    def dequeue_jobs(self, n: int) -> list[Job]:
        """Claims up to ``n`` jobs in one round trip, in dequeue order.

        Orphans (data expired) are dropped and reported; a corrupt job (data
        that is not a Go job) is failed with the reason, never handed out.
        Each job has status ``running`` and ``started_at`` the claim's server
        time; what is stored for the Go service is unchanged (its JSON keeps
        the status it was added with, as Go's DequeueJob leaves it).
        """
        arguments.whole_number("n", n, 1)
        jobs: list[Job] = []
        while len(jobs) < n:
            with self._script_head_errors:
                reply = self._claim(n - len(jobs), n + CLAIM_EXTRA_POPS)
            # skipped, set-aside count, claim time, set-aside pairs, claimed pairs (claim_jobs.lua)
            skipped, set_aside_count = reply[0], reply[1]
            claimed = reply[3 + 2 * set_aside_count :]
            if skipped or set_aside_count:
                self._log_claim_leftovers(skipped, reply[3 : 3 + 2 * set_aside_count])
            started_at = datetime.fromtimestamp(reply[2] / 1000, UTC) if claimed else None
            pairs = iter(claimed)
            for raw_id, data in zip(pairs, pairs):
                job_id = raw_id.decode("utf-8", "replace")
                try:
                    job = Job.from_wire(data, job_id)
                except CorruptJobError as exc:
                    logger.warning("job %s set aside as failed: %s", job_id, exc)
                    self.fail_job(job_id, error=str(exc))
                    continue
                job.id = job_id
                job.status = _RUNNING
                job.started_at = started_at
                jobs.append(job)
            if not claimed and not skipped and not set_aside_count:
                break
        return jobs

    def _claim(self, wanted: int, most_pops: int) -> Any:
        """claim_jobs.lua's reply; a single job's claim goes pre-packed (packed_calls.py)."""
        script = self._scripts.claim_jobs
        if self._packed.usable and wanted == 1 and most_pops == 1 + CLAIM_EXTRA_POPS:
            packed = self._claim_one_packed
            if packed is None:  # packed once: a worker's claim of one job never changes
                packed = self._claim_one_packed = self._claim_packed(wanted, most_pops)
            return self._packed.evalsha(packed, script.script)
        if self._packed.usable:
            return self._packed.evalsha(self._claim_packed(wanted, most_pops), script.script)
        keys = self.keys
        return script(keys=keys.script_head,
                      args=(keys.data_prefix, keys.status_prefix, wanted, self.ttl, keys.updates, most_pops))

    def _claim_packed(self, wanted: int, most_pops: int) -> bytes:
        keys = self.keys
        return packed_evalsha(self._packed, self._scripts.claim_jobs.sha, keys.script_head,
                              (keys.data_prefix, keys.status_prefix, wanted, self.ttl, keys.updates, most_pops))

    def _log_claim_leftovers(self, skipped: int, set_aside: list[bytes]) -> None:
        for job_id, reason in zip(set_aside[::2], set_aside[1::2]):
            logger.warning("job %s set aside as failed: %s", as_text(job_id), as_text(reason))
        if skipped:
            logger.info("dropped %d orphaned or finished ids from %s", skipped, self.keys.queue)

    def complete_job(self, job_id: str) -> None:
        """Marks a job completed and publishes job_completed (Go's CompleteJob)."""
        self._transition_one(job_id, JobStatus.COMPLETED, "job_completed")

    def complete_jobs(self, job_ids: Iterable[str]) -> list[str]:
        """Completes many jobs in one round trip per 500; returns the ids completed."""
        return self._transition_many(job_ids, JobStatus.COMPLETED, "job_completed", "known")

    def cancel_job(self, job_id: str) -> None:
        """Cancels a pending or running job (Go's CancelJob)."""
        self._transition_one(job_id, JobStatus.CANCELLED, "job_cancelled")

    def cancel_jobs(self, job_ids: Iterable[str]) -> list[str]:
        """Cancels many jobs; returns the ids cancelled (unknown ids are skipped)."""
        return self._transition_many(job_ids, JobStatus.CANCELLED, "job_cancelled", "known")

    def update_job_status(self, job_id: str, status: str | JobStatus) -> None:
        """Stores a status (Go's UpdateJobStatus); 'processing' is stored as 'running'."""
        self._transition_one(job_id, JobStatus.parse(status), "")

    def fail_job(
        self,
        job_id: str,
        requeue: bool = False,
        job: Job | Mapping[str, Any] | None = None,
        error: str | None = None,
    ) -> bool:
        """Fails a job a worker holds (Go's FailJob); returns True when it was put back in the queue.

        With ``requeue`` the job goes back with its priority lowered by one (not
        below 0), as in Go, at the back of that level, and no job_failed is
        published. The job is read from Redis when not given; when it cannot be
        (expired, corrupt) it is failed without requeue and the reason is logged.

        Failing is for a job in processing: any other raises JobStateError (an
        InvalidInputError, so a ValueError) naming its state, and nothing is
        written, as the script checks it in the same atomic step; an unknown id
        raises JobNotFoundError. ``cancel_job`` works in any state.
        """
        validate_job_id(job_id)
        if not requeue:
            self._fail_held(job_id, error or "")
            return False
        try:
            retry = self._job_for_requeue(job_id, job)
        except (JobNotFoundError, CorruptJobError) as exc:
            self._fail_held(job_id, str(exc))
            logger.warning("job %s could not be requeued, failed instead: %s", job_id, exc)
            return False
        keys = self.keys
        script_keys = [*keys.script_head, keys.status(job_id), keys.data(job_id), keys.sequence]
        with self.errors_for(*script_keys):
            outcome = self._scripts.requeue_failed(
                keys=script_keys,
                args=[job_id, retry.to_json(), retry.priority, self.ttl, keys.updates, error or ""],
            )
        if outcome != 1:  # not held: its status, '' when it has none (requeue_failed.lua)
            raise self._not_held(job_id, as_text(outcome))
        return True

    def _fail_held(self, job_id: str, error: str) -> None:
        """Fails a held job without requeue: set_status on processing ids only."""
        keys = self.keys
        status_key = keys.status(job_id)
        with self._script_head_errors:
            outcome = self._scripts.set_status(
                keys=(*keys.script_head, status_key),
                args=(JobStatus.FAILED.value, self.ttl, keys.updates, "job_failed", "processing", error,
                      int(time.time()), job_id),
            )
        if outcome in _CHANGED:
            return
        if outcome in _WRONG_TYPE:
            raise WrongKeyTypeError(f"key {status_key!r} is not a string: cannot store a status there")
        with self.errors_for(status_key):
            status = as_text(self.redis.get(status_key) or b"")
        raise self._not_held(job_id, status)

    def _not_held(self, job_id: str, status: str) -> BotrixError:
        """Why a job no worker holds cannot be failed: its state, or that it is unknown."""
        if not status:
            return JobNotFoundError(f"no job {job_id!r} is being processed, and it has no status "
                                    f"(key {self.keys.status(job_id)!r}): unknown or expired")
        return JobStateError(f"cannot fail job {job_id!r}: it is {status!r}, not held by a worker; only a job "
                             "in processing can be failed (cancel_job works in any state)")

    def _job_for_requeue(self, job_id: str, job: Job | Mapping[str, Any] | None) -> Job:
        if job is None:
            with self.errors_for(self.keys.data(job_id)):
                data = get_raw(self.redis, self.keys.data(job_id))
            if data is None:
                raise JobNotFoundError(f"job {job_id!r} has no data (key {self.keys.data(job_id)!r})")
            job = Job.from_wire(data, job_id)
        else:
            job = dataclasses.replace(Job.from_dict(job))
        job.id = job_id
        job.priority = max(int(job.priority) - 1, 0)
        job.status = JobStatus.PENDING.value
        job.updated_at = utc_now()
        # The times of an attempt (dequeue_job's started_at, get_job's) are not
        # stored: the JSON keeps the ones it was read with.
        for name in ("started_at", "completed_at"):
            read = job._raw_times.get(name)
            setattr(job, name, read[0] if read is not None else None)
        return job

    def _transition_one(self, job_id: str, status: JobStatus, event: str, error: str = "") -> None:
        # Every completion takes this path: the script is called here, without
        # the list handling of _set_status (measurable between two round trips).
        validate_job_id(job_id)
        keys = self.keys
        status_key = keys.status(job_id)
        script, args = self._scripts.set_status, (
            status.value, self.ttl, keys.updates, event, "known", error, int(time.time()), job_id)
        with self._script_head_errors:  # the script reports a status key of another type itself
            if self._packed.usable:
                packed = packed_evalsha(self._packed, script.sha, (*keys.script_head, status_key), args)
                outcome = self._packed.evalsha(packed, script.script)
            else:
                outcome = script(keys=(*keys.script_head, status_key), args=args)
        if outcome == _CHANGED:
            return
        if outcome == _WRONG_TYPE:
            raise WrongKeyTypeError(f"key {status_key!r} is not a string: cannot store a status there")
        raise JobNotFoundError(f"no job {job_id!r}: not queued, not processing, and no key {status_key!r}")

    def _transition_many(
        self, job_ids: Iterable[str], status: JobStatus, event: str, which: str
    ) -> list[str]:
        ids = [validate_job_id(job_id) for job_id in job_ids]
        changed: list[str] = []
        for start in range(0, len(ids), STATUS_BATCH):
            changed += self._set_status(ids[start : start + STATUS_BATCH], status, event, which)
        return changed

    def _set_status(
        self, ids: Sequence[str], status: JobStatus, event: str, which: str, error: str = ""
    ) -> list[str]:
        keys = self.keys
        script_keys = [*keys.script_head, *map(keys.status, ids)]
        with self.errors_for(*script_keys):
            outcome = as_text(self._call_script(
                self._scripts.set_status, script_keys,
                (status.value, self.ttl, keys.updates, event, which, error, int(time.time()), *ids),
            ))
        # One letter per id (set_status.lua): c changed, s skipped, w status key of another type.
        if "w" in outcome:
            self._log_wrong_status_keys([job_id for job_id, letter in zip(ids, outcome) if letter == "w"])
        return [job_id for job_id, letter in zip(ids, outcome) if letter == "c"]

    def _log_wrong_status_keys(self, wrong_type: list[str]) -> None:
        for job_id in wrong_type:
            logger.warning("skipped key %s: it is not a string, cannot store a status there", self.keys.status(job_id))

    # -- leases, stalled jobs and orphans --------------------------------
    def renew_lease(self, job_id: str) -> bool:
        """Tells that the job is still being worked on; False if it is no longer held."""
        return self.renew_leases([job_id]) == 1

    def renew_leases(self, job_ids: Iterable[str]) -> int:
        """Renews the leases of many held jobs; returns how many were still held."""
        ids = [validate_job_id(job_id) for job_id in job_ids]
        if not ids:
            return 0
        keys = self.keys
        with self.errors_for(keys.processing, keys.leases):
            return int(self._scripts.renew_leases(keys=[keys.processing, keys.leases], args=ids))

    def release_jobs(self, job_ids: Iterable[str]) -> list[str]:
        """Puts held jobs back in the queue unfinished, priority unchanged; returns those put back.

        For a worker that must stop before finishing its jobs: nothing failed,
        so no retry is counted. Ids no longer held are skipped.
        """
        ids = [validate_job_id(job_id) for job_id in job_ids]
        keys, released = self.keys, []
        for start in range(0, len(ids), STATUS_BATCH):
            batch = ids[start : start + STATUS_BATCH]
            script_keys = [*keys.script_head]
            for job_id in batch:
                script_keys += (keys.data(job_id), keys.status(job_id))
            with self._script_head_errors:
                done = self._scripts.release_jobs(keys=script_keys, args=[self.ttl, keys.updates, *batch])
            released += [as_text(job_id) for job_id in done]
        return released

    def recover_stalled(self, timeout_s: float = 300.0) -> list[str]:
        """Puts back in the queue every job held longer than ``timeout_s``.

        Jobs taken by the Go service carry no lease: they get one on the first
        call and are recovered once held for the timeout after it. Returns the
        ids put back; stalled jobs that cannot be served again (data expired or
        corrupt) are failed and logged.
        """
        arguments.seconds("timeout_s", timeout_s, zero_allowed=True)
        keys = self.keys
        with self._script_head_errors:
            recovered, failed, left_held = self._scripts.recover_stalled(
                keys=keys.script_head,
                args=[keys.data_prefix, keys.status_prefix, int(timeout_s * 1000), self.ttl, keys.updates],
            )
        for job_id, reason in zip(failed[::2], failed[1::2]):
            logger.warning("stalled job %s failed: %s", as_text(job_id), as_text(reason))
        if left_held:
            logger.warning("%d stalled jobs left held: their keys are being moved to another cluster node; "
                           "a later call recovers them", left_held)
        ids = [as_text(job_id) for job_id in recovered]
        if ids:
            logger.info("recovered %d stalled jobs into %s", len(ids), keys.queue)
        return ids

    def prune_orphans(self, chunk: int = 1000) -> list[str]:
        """Removes from the queue every id whose job data has expired; returns them."""
        keys, removed, start = self.keys, [], 0
        with self.errors_for(keys.queue):
            while True:
                ids = [as_text(m) for m in zrange_raw(self.redis, keys.queue, start, start + chunk - 1)]
                if not ids:
                    break
                gone = self._scripts.remove_orphans(
                    keys=[keys.queue, *map(keys.data, ids)], args=[keys.updates, *ids]
                )
                removed += [as_text(job_id) for job_id in gone]
                start += len(ids) - len(gone)
        if removed:
            logger.info("pruned %d orphaned ids from %s", len(removed), keys.queue)
        return removed

    # -- clearing --------------------------------------------------------
    def clear_queue(self, progress: ProgressCallback | None = None) -> int:
        """Cancels every pending job (status cancelled, events published); returns how many.

        Works in batches, so a huge queue does not block the server; jobs added
        while it runs may stay.
        """
        keys = self.keys
        with self.errors_for(keys.queue):
            total = self.redis.zcard(keys.queue)
        done = seen = 0
        while seen <= total:
            with self.errors_for(keys.queue):
                ids = [as_text(m) for m in zrange_raw(self.redis, keys.queue, 0, STATUS_BATCH - 1)]
            if not ids:
                break
            seen += len(ids)
            done += len(self._set_status(ids, JobStatus.CANCELLED, "job_cancelled", "queued"))
            if progress is not None:
                progress(min(done, total), total)
        logger.info("cleared %d jobs from %s", done, keys.queue)
        return done

    def clear_processing(self) -> int:
        """Cancels every job in processing (no worker may finish it now); returns how many."""
        keys = self.keys
        with self.errors_for(keys.processing):
            ids = sorted(as_text(m) for m in smembers_raw(self.redis, keys.processing))
        return len(self._transition_many(ids, JobStatus.CANCELLED, "job_cancelled", "processing"))

    # -- reading ---------------------------------------------------------
    def get_job_status(self, job_id: str) -> str:
        """The stored status of a job; JobNotFoundError when there is none."""
        key = self.keys.status(validate_job_id(job_id))
        with self.errors_for(key):
            value = get_raw(self.redis, key)
        if value is None:
            raise JobNotFoundError(f"no status for job {job_id!r} (key {key!r}): unknown or expired")
        text = as_text(value)
        try:
            return JobStatus(text).value
        except ValueError:
            raise CorruptJobError(f"key {key!r} holds {text[:40]!r}, not a job status") from None

    def get_job(self, job_id: str) -> Job:
        """The job as it is now: its JSON, with the status and times the server knows.

        ``status`` is the status key's (the JSON keeps the status the job was
        added with); ``started_at`` of a running job is when it was claimed,
        ``completed_at`` of a finished one (completed, failed, cancelled) when
        it ended, both read from when the status key was last written (its
        expiry less this service's ``ttl``: the Go service and the toolkit write
        it with their ttl, 3600 s by default); a pending job has neither.
        Where that cannot be known (no status key, or one written with a
        longer ttl), the stored values are kept. Nothing is written: the Go
        service's JSON stays as it is. JobNotFoundError or CorruptJobError.
        """
        keys = self.keys
        data_key, status_key = keys.data(validate_job_id(job_id)), keys.status(job_id)
        with self.errors_for(data_key, status_key):
            data, status, status_ttl_ms, now_ms = self._scripts.read_job(keys=(data_key, status_key))
        if data is None:
            raise JobNotFoundError(f"no data for job {job_id!r} (key {data_key!r}): unknown or expired")
        job = Job.from_wire(data, job_id)
        try:
            current = JobStatus(as_text(status)) if status else None
        except ValueError:
            logger.warning("job %s: key %s holds no status; the stored one is shown", job_id, status_key)
            current = None
        if current is None:
            return job
        job.status = current.value
        written_ms = now_ms - (self.ttl * 1000 - status_ttl_ms) if 0 <= status_ttl_ms <= self.ttl * 1000 else None
        written_at = datetime.fromtimestamp(written_ms / 1000, UTC) if written_ms is not None else None
        if current is JobStatus.PENDING:
            job.started_at = job.completed_at = None
        elif current is JobStatus.RUNNING:
            job.started_at, job.completed_at = written_at or job.started_at, None
        else:
            job.completed_at = written_at or job.completed_at
        return job

    def get_pending_jobs(self, limit: int | None = None) -> list[Job]:
        """The pending jobs in dequeue order; orphans and corrupt entries left out."""
        jobs = []
        with self.errors_for(self.keys.queue):
            for chunk in queries.iter_queue_entries(self.redis, self.keys, limit):
                for job_id, data, status in zip(chunk.ids, chunk.data, chunk.status):
                    if data is None or status not in (None, b"pending"):
                        continue
                    try:
                        job = Job.from_wire(data, job_id)
                    except CorruptJobError as exc:
                        logger.warning("skipping corrupt pending job: %s", exc)
                        continue
                    job.id = job_id
                    jobs.append(job)
        return jobs

    def get_queue_length(self) -> int:
        with self.errors_for(self.keys.queue):
            return int(self.redis.zcard(self.keys.queue))

    def get_processing_count(self) -> int:
        with self.errors_for(self.keys.processing):
            return int(self.redis.scard(self.keys.processing))

    def is_job_processing(self, job_id: str) -> bool:
        with self.errors_for(self.keys.processing):
            return bool(self.redis.sismember(self.keys.processing, validate_job_id(job_id)))

    def get_queue_stats(self) -> dict[str, int]:
        """queue_length, processing_count, exact high/normal/low counts, ttl_seconds."""
        with self.errors_for(self.keys.queue, self.keys.processing):
            return queries.queue_stats(self.redis, self.keys, self.ttl)

    def queue_gauges(self, lease_s: float, candidates: Sequence[str] = ()) -> queries.QueueGauges:
        """Pending by level, processing, jobs held past ``lease_s`` and which ``candidates`` still wait.

        One round trip, read only (queries.queue_gauges): what a metrics
        exporter refreshes every few seconds.
        """
        arguments.seconds("lease_s", lease_s)
        ids = [validate_job_id(job_id) for job_id in candidates]
        with self._script_head_errors:
            return queries.queue_gauges(self.redis, self.keys, self._scripts, round(lease_s * 1000), ids)

    def iter_pending_since(self, chunk: int = queries.READ_CHUNK) -> Iterator[queries.PendingSince]:
        """The queue in chunks, with when each job became pending (see queries.iter_pending_since)."""
        with self.errors_for(self.keys.queue):
            yield from queries.iter_pending_since(self.redis, self.keys, self.ttl, chunk)

    # -- frames ----------------------------------------------------------
    def pending_jobs_frame(
        self, limit: int | None = None, secrets: Iterable[str] = SECRET_FIELDS
    ) -> pd.DataFrame:
        """Pending jobs in dequeue order as a DataFrame: see job_frames.PENDING_COLUMNS."""
        from botrix_toolkit.frames.job_frames import pending_jobs_frame

        return pending_jobs_frame(self, limit, secrets)

    def processing_frame(self) -> pd.DataFrame:
        """Jobs held by workers, longest held first: see job_frames.PROCESSING_COLUMNS."""
        from botrix_toolkit.frames.job_frames import processing_frame

        return processing_frame(self)

    def stats_frame(self) -> pd.DataFrame:
        """One row of get_queue_stats() with its timestamp: see frames.STATS_COLUMNS."""
        from botrix_toolkit.frames.job_frames import stats_frame

        return stats_frame(self)

    # -- results ---------------------------------------------------------
    def save_job_result(self, job_id: str, result: Any) -> None:
        """Stores any JSON-serialisable value as the job's result, for ``ttl`` seconds."""
        key = self.keys.results(validate_job_id(job_id))
        try:
            body = json.dumps(result, ensure_ascii=False, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
            raise InvalidInputError(f"result of job {job_id!r} is not JSON-serialisable: {exc}") from None
        except RecursionError:
            body = b"[" * (MAX_JSON_DEPTH + 1)  # deeper than Python can encode
        if nests_too_deep(body):
            raise InvalidInputError(too_deep_message(f"result of job {job_id!r}"))
        with self.errors_for(key):
            # SET ... GET refuses (WRONGTYPE) a key holding another type
            # instead of silently replacing it, in the same single command.
            set_raw(self.redis, key, body, ex=self.ttl, get=True)

    def get_job_result(self, job_id: str) -> str:
        """The job's result as JSON text; JobNotFoundError when there is none."""
        key = self.keys.results(validate_job_id(job_id))
        with self.errors_for(key):
            value = get_raw(self.redis, key)
        if value is None:
            raise JobNotFoundError(f"no result for job {job_id!r} (key {key!r})")
        return as_text(value)

    # -- connection ------------------------------------------------------
    def subscribe(self, channel: str | None = None) -> redis.client.PubSub:
        """A PubSub subscribed to the updates channel (or ``channel``)."""
        pubsub = self.redis.pubsub()
        with self.errors_for():
            pubsub.subscribe(channel or self.keys.updates)
        return pubsub

    def health(self) -> bool:
        """True when the server answers PING."""
        try:
            return bool(self.redis.ping())
        except redis.exceptions.RedisError:
            return False

    def close(self) -> None:
        """Closes the client's connections, those parked for the hot calls too (packed_calls.py)."""
        self._packed.close()
        self.redis.close()

    def __enter__(self) -> QueueService:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _repr_html_(self) -> str:
        """A short summary for Jupyter: server, queue length by priority, processing."""
        title = html.escape(f"QueueService {self._server} · prefix {self.keys.prefix}")
        try:
            stats = self.get_queue_stats()
        except Exception as exc:
            return f"<b>{title}</b><br>unreachable: {html.escape(str(exc))}"
        rows = "".join(
            f"<tr><td>{html.escape(name)}</td><td style='text-align:right'>{stats[key]:,}</td></tr>"
            for name, key in (
                ("pending", "queue_length"),
                ("· high", "high_priority"),
                ("· normal", "normal_priority"),
                ("· low", "low_priority"),
                ("processing", "processing_count"),
            )
        )
        return f"<b>{title}</b><table>{rows}</table>"


def _prepare_for_add(job: Job | Mapping[str, Any]) -> tuple[str, str, int]:
    """(id, Go JSON, priority) of a job about to be added, validated."""
    if type(job) is dict and (plain := plain_job_json(job)):
        return plain
    if isinstance(job, Job):
        job = dataclasses.replace(job)
        job.id = job.id or new_job_id()
        validate_job_id(job.id)
        # An IntEnum would reach redis-py as its repr: store the plain integer.
        job.priority = int(Priority.parse(job.priority))
    else:
        job = Job.from_dict(job)  # validates the priority and stores it as an int
    job.status = JobStatus.PENDING.value
    job.stamp_times(utc_now())
    return job.id, job.to_json(), job.priority


def _describe_client(client: RedisClient) -> str:
    if is_cluster_client(client):
        node = client.get_default_node()
        return f"redis://{node.host}:{node.port} (cluster)" if node else "a Redis Cluster"
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    return f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
