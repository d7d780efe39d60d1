"""Read-only views of a queue: batched reads that never change a key.

Kept apart from the writing operations (queue.py) so that a reader can see at
a glance that nothing here has side effects. Reads are chunked and pipelined:
the Go service's two GETs per job read about 2,900 jobs a second; a chunked
MGET reads tens of thousands.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import Any, NamedTuple

from redis.client import Pipeline

from botrix_toolkit.core.clients import RedisClient, mget_raw, smembers_raw, zrange_with_scores_raw
from botrix_toolkit.core.keys import QueueKeys
from botrix_toolkit.core.node_pipelines import PipelineCommand, run_on_queue_node
from botrix_toolkit.core.read_ahead import round_trips
from botrix_toolkit.core.scripting import Scripts

READ_CHUNK = 10_000

# Score bounds of each level; exclusive bounds keep the three ranges apart,
# unlike Go's overlapping ZCOUNTs (defect 1). They hold Go's scores (-priority)
# and the toolkit's, strictly inside (-priority - 1, -priority)
# (docs/wire-format.md, "Scores").
HIGH_SCORES = ("-inf", "-2")
NORMAL_SCORES = ("(-2", "-1")
LOW_SCORES = ("(-1", "+inf")


def priority_of_score(score: float) -> int:
    """The priority of a queue score: Go's ``-p``, or the toolkit's inside ``(-p - 1, -p)``."""
    return -math.ceil(score)


@dataclass(frozen=True)
class QueueEntries:
    """One chunk of the queue, in dequeue order; parallel lists.

    ``raw_ids`` are the queue's members as stored; ``data`` and ``status``
    hold the raw bytes of the keys, None where the key is missing (an orphan
    has no data).
    """

    first_rank: int
    raw_ids: list[bytes]
    data: list[bytes | None]
    status: list[bytes | None]
    raw_scores: list[bytes | float] = field(default_factory=list, repr=False)  # float from RESP3

    @cached_property
    def ids(self) -> list[str]:
        """The ids as text (undecodable bytes replaced); built only when asked for."""
        return [member.decode("utf-8", "replace") for member in self.raw_ids]

    @cached_property
    def priorities(self) -> list[int]:
        """Each job's priority as its queue score gives it (``priority_of_score``)."""
        return [priority_of_score(float(score)) for score in self.raw_scores]


def iter_queue_entries(
    client: RedisClient, keys: QueueKeys, limit: int | None = None, chunk: int = READ_CHUNK,
    *, with_scores: bool = True,
) -> Iterator[QueueEntries]:
    """The queue from its head, ``chunk`` ids at a time, with data and status.

    One round trip per chunk: the MGETs of a chunk's data and status keys
    and the ZRANGE of the chunk two further on. The ids run two chunks ahead
    so that the next round trip is always sent before the last reply is
    read (``read_ahead``): the server answers one while the client parses
    the other. A job dequeued meanwhile may shift the ranks of later chunks:
    the result is a snapshot per chunk, not of the whole queue.
    ``with_scores=False`` leaves ``raw_scores`` empty, for readers that take
    the priority from the job data.
    """
    if limit is not None and limit <= 0:
        return
    # Keys are built from the members' bytes: no decoding and encoding per id.
    data_prefix, status_prefix = keys.data_prefix.encode(), keys.status_prefix.encode()
    ranges = _ChunkRanges(keys.queue, chunk, limit, with_scores)
    known: deque[_ChunkIds] = deque()  # ids whose data is not asked for yet
    in_flight: deque[tuple[_ChunkIds | None, int | None]] = deque()  # each request's chunk and range
    with round_trips(client, keys) as trips:

        def send_next() -> None:
            # the data of the oldest chunk of known ids, and the next range of ids
            commands: list[tuple[Any, ...]] = []
            ids = known.popleft() if known else None
            if ids is not None:
                commands += [("MGET", *[data_prefix + member for member in ids.members]),
                             ("MGET", *[status_prefix + member for member in ids.members])]
            first = ranges.next_first()
            if first is not None:
                commands.append(ranges.command(first))
            if commands:
                trips.send(commands)
                in_flight.append((ids, first))

        send_next()
        send_next()
        while in_flight:
            ids, first = in_flight.popleft()
            replies = trips.receive()
            if first is not None:
                members, scores = _members_and_scores(replies[-1], with_scores)
                if ranges.took(first, len(members)) and members:
                    known.append(_ChunkIds(first, members, scores))
            send_next()  # before the reply just read is handed out: the server works meanwhile
            if ids is not None:
                yield QueueEntries(ids.first_rank, ids.members, replies[0], replies[1], ids.scores)


class _ChunkIds(NamedTuple):
    first_rank: int
    members: list[bytes]
    scores: list[bytes | float]


class _ChunkRanges:
    """The ZRANGEs of a queue read from its head, chunk by chunk, up to a limit or a short range."""

    def __init__(self, queue: str, chunk: int, limit: int | None, with_scores: bool) -> None:
        self._queue, self._chunk, self._limit = queue, chunk, limit
        self._scores = ("WITHSCORES",) if with_scores else ()  # a flat raw reply, split by slicing
        self._following = 0
        self._ended = False

    def next_first(self) -> int | None:
        """The first rank of the next range to ask for, None when there is none."""
        first = self._following
        if self._ended or (self._limit is not None and first >= self._limit):
            return None
        self._following += self._chunk
        return first

    def command(self, first: int) -> tuple[Any, ...]:
        return ("ZRANGE", self._queue, first, self._last(first), *self._scores)

    def took(self, first: int, count: int) -> bool:
        """Records a range's reply; False for one asked beyond the end (to be dropped)."""
        if self._ended:
            return False
        if count < self._last(first) - first + 1:
            self._ended = True
        return True

    def _last(self, first: int) -> int:
        last = first + self._chunk - 1
        return last if self._limit is None else min(last, self._limit - 1)


def _members_and_scores(reply: list, with_scores: bool) -> tuple[list[bytes], list[bytes | float]]:
    if not with_scores:
        return reply, []
    if reply and isinstance(reply[0], list):  # RESP3: [member, score] pairs
        return [pair[0] for pair in reply], [pair[1] for pair in reply]
    return reply[::2], reply[1::2]


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


@dataclass(frozen=True)
class QueueGauges:
    """A queue's health at one instant (queue_gauges.lua): what a metrics exporter shows.

    ``pending``: exact counts by level (high, normal, low); ``stalled``: jobs in
    processing whose lease was not renewed for longer than the lease length;
    ``still_queued``: for each candidate id asked about, whether it is still in
    the queue.
    """

    server_time_ms: int
    pending: dict[str, int]
    processing: int
    stalled: int
    still_queued: list[bool]


def queue_gauges(
    client: RedisClient, keys: QueueKeys, scripts: Scripts, lease_ms: int, candidates: Sequence[str] = ()
) -> QueueGauges:
    """Pending by level, processing, stalled and which candidates still wait, in one round trip.

    A read-only script rather than a pipeline: the stalled count compares
    leases with the server's clock and checks each expired one against the
    processing set, which a pipeline cannot do without a second round trip.
    """
    reply = scripts.queue_gauges(
        keys=keys.script_head,
        args=[*HIGH_SCORES, *NORMAL_SCORES, *LOW_SCORES, int(lease_ms), *candidates],
        client=client,
    )
    now_ms, high, normal, low, processing, stalled = (int(value) for value in reply[:6])
    return QueueGauges(now_ms, {"high": high, "normal": normal, "low": low}, processing, stalled,
                       [bool(flag) for flag in reply[6:]])


@dataclass(frozen=True)
class PendingSince:
    """One chunk of the queue with when each job entered it; parallel lists.

    ``since_ms`` is on the server's clock, None where the status key is gone
    or never expires (then it cannot be told).
    """

    ids: list[str]
    priorities: list[int]
    since_ms: list[int | None]


def iter_pending_since(
    client: RedisClient, keys: QueueKeys, ttl: int, chunk: int = READ_CHUNK
) -> Iterator[PendingSince]:
    """The queue from its head, ``chunk`` ids at a time, with when each job became pending.

    Every add, requeue and recovery writes the status key ``pending`` with an
    expiry of ``ttl`` seconds and nothing rewrites it while the job waits, so
    its remaining time to live tells how long ago the job was queued (exact
    when every writer of the queue uses that ttl; the Go service uses 3600 s,
    the toolkit's default). One round trip per chunk after the ZRANGE.
    """
    start, ttl_ms = 0, ttl * 1000
    while True:
        members = zrange_with_scores_raw(client, keys.queue, start, start + chunk - 1)
        if not members:
            return
        ids = [member.decode("utf-8", "replace") for member, _ in members]
        commands: list[PipelineCommand] = [lambda pipe: pipe.time()]
        status_keys = [keys.status(job_id) for job_id in ids]
        commands += [partial(_pttl, key=key) for key in status_keys]
        replies = run_on_queue_node(client, keys, commands)
        seconds, micros = replies[0]
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        since = [now_ms - (ttl_ms - int(left)) if int(left) >= 0 else None for left in replies[1:]]
        yield PendingSince(ids, [int(-score) for _, score in members], since)
        if len(members) < chunk:
            return
        start += chunk


def _pttl(pipe: Pipeline, key: str) -> object:
    return pipe.pttl(key)
