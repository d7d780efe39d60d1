"""Read-only views of a queue: batched reads that never change a key.

Kept apart from the writing operations (queue.py) so that a reader can see at
a glance that nothing here has side effects. Reads are chunked and pipelined:
the Go service's two GETs per job read about 2,900 jobs a second; a chunked
MGET reads tens of thousands.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

from botrix_toolkit.core.clients import RedisClient, mget_raw, smembers_raw, zrange_with_scores_raw
from botrix_toolkit.core.keys import QueueKeys
from botrix_toolkit.core.node_pipelines import PipelineCommand, run_on_queue_node

READ_CHUNK = 10_000

# Score bounds of each level (score = -priority); exclusive bounds keep the
# three ranges apart, unlike Go's overlapping ZCOUNTs (defect 1).
HIGH_SCORES = ("-inf", "-2")
NORMAL_SCORES = ("(-2", "-1")
LOW_SCORES = ("(-1", "+inf")


@dataclass(frozen=True)
class QueueEntries:
    """One chunk of the queue, in dequeue order; parallel lists.

    ``data`` and ``status`` hold the raw bytes of the keys, None where the key
    is missing (an orphan has no data).
    """

    first_rank: int
    ids: list[str]
    priorities: list[int]
    data: list[bytes | None]
    status: list[bytes | None]


def iter_queue_entries(
    client: RedisClient, keys: QueueKeys, limit: int | None = None, chunk: int = READ_CHUNK
) -> Iterator[QueueEntries]:
    """The queue from its head, ``chunk`` ids at a time, with data and status.

    One round trip per chunk: ZRANGE, then MGET of the data and status keys in
    one pipeline. A job dequeued meanwhile may shift the ranks of the next
    chunk: the result is a snapshot per chunk, not of the whole queue.
    """
    start = 0
    while limit is None or start < limit:
        stop = start + chunk - 1 if limit is None else min(start + chunk, limit) - 1
        members = zrange_with_scores_raw(client, keys.queue, start, stop)
        if not members:
            return
        ids = [member.decode("utf-8", "replace") for member, _ in members]
        data_keys, status_keys = [keys.data(job_id) for job_id in ids], [keys.status(job_id) for job_id in ids]
        data, status = run_on_queue_node(client, keys, [
            partial(mget_raw, keys=data_keys), partial(mget_raw, keys=status_keys),
        ])
        yield QueueEntries(start, ids, [int(-score) for _, score in members], data, status)
        if len(members) <= stop - start:
            return
        start = stop + 1


def queue_stats(client: RedisClient, keys: QueueKeys, ttl: int) -> dict[str, int]:
    """Queue length, processing count and exact counts by level, in one round trip."""
    length, processing, high, normal, low = run_on_queue_node(client, keys, [
        lambda pipe: pipe.zcard(keys.queue),
        lambda pipe: pipe.scard(keys.processing),
        *(lambda pipe, low=low, high=high: pipe.zcount(keys.queue, low, high)
          for low, high in (HIGH_SCORES, NORMAL_SCORES, LOW_SCORES)),
    ])
    return {
        "queue_length": length,
        "processing_count": processing,
        "high_priority": high,
        "normal_priority": normal,
        "low_priority": low,
        "ttl_seconds": ttl,
    }


@dataclass(frozen=True)
class HeldJobs:
    """The jobs in processing, with lease times (ms, server clock) and data."""

    server_time_ms: int
    ids: list[str]
    leased_at_ms: list[float | None]
    data: list[bytes | None]
    status: list[bytes | None]


def held_jobs(client: RedisClient, keys: QueueKeys) -> HeldJobs:
    """Every job in processing with its lease, read in two round trips."""
    members = sorted(m.decode("utf-8", "replace") for m in smembers_raw(client, keys.processing))
    commands: list[PipelineCommand] = [lambda pipe: pipe.time()]
    if members:
        commands += [
            lambda pipe: pipe.zmscore(keys.leases, members),
            lambda pipe: mget_raw(pipe, [keys.data(job_id) for job_id in members]),
            lambda pipe: mget_raw(pipe, [keys.status(job_id) for job_id in members]),
        ]
    replies = run_on_queue_node(client, keys, commands)
    seconds, micros = replies[0]
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    if not members:
        return HeldJobs(now_ms, [], [], [], [])
    return HeldJobs(now_ms, members, replies[1], replies[2], replies[3])
