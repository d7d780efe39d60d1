"""QueueGroup: several named queues read together, one frame for all of them.

A group holds one QueueService per queue, e.g. ``botrix:jobs`` on a single
server, or ``{botrix:jobs}``, ``{reports}``, ``{mail}`` spread over the nodes of
a cluster. Its frames are the frames of each queue, concatenated, with a
``queue`` column in front naming the queue each row belongs to.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import pandas as pd

from botrix_toolkit.core.errors import InvalidInputError
from botrix_toolkit.core.queue import DEFAULT_TTL, QueueService

logger = logging.getLogger(__name__)

QUEUE_COLUMN = "queue"


class QueueGroup:
    """Named queues, read as one.

    ``queues`` is a mapping name -> QueueService, or a list of QueueServices
    (each named by its prefix). Names are the values of the ``queue`` column.
    """

    def __init__(self, queues: Mapping[str, QueueService] | Iterable[QueueService]) -> None:
        if isinstance(queues, Mapping):
            named = dict(queues)
        else:
            named = {}
            for q in queues:
                if not isinstance(q, QueueService):
                    raise InvalidInputError(f"a queue group holds QueueServices; got {q!r}")
                if q.keys.prefix in named:
                    raise InvalidInputError(f"queue prefix {q.keys.prefix!r} is given twice")
                named[q.keys.prefix] = q
        if not named:
            raise InvalidInputError("a queue group needs at least one queue")
        for name, q in named.items():
            if not isinstance(name, str) or not name:
                raise InvalidInputError(f"queue names must be non-empty strings; got {name!r}")
            if not isinstance(q, QueueService):
                raise InvalidInputError(f"queue {name!r} is not a QueueService: {q!r}")
        self.queues: dict[str, QueueService] = named

    @classmethod
    def from_url(
        cls, url: str, prefixes: Iterable[str], ttl: int = DEFAULT_TTL, **kwargs: Any
    ) -> QueueGroup:
        """One queue per prefix on the server (or cluster) at ``url``, sharing one client.

        ``kwargs`` go to ``QueueService.from_url`` (``cluster=``, ``socket_timeout=``...).
        """
        prefixes = list(prefixes)
        if not prefixes:
            raise InvalidInputError("a queue group needs at least one prefix")
        first = QueueService.from_url(url, prefix=prefixes[0], ttl=ttl, **kwargs)
        queues = [first] + [QueueService(first.redis, prefix=p, ttl=ttl, url=first.url)
                            for p in prefixes[1:]]
        return cls(queues)

    def __repr__(self) -> str:
        return f"QueueGroup({list(self.queues)!r})"

    def __len__(self) -> int:
        return len(self.queues)

    def __iter__(self) -> Iterator[str]:
        return iter(self.queues)

    def __getitem__(self, name: str) -> QueueService:
        try:
            return self.queues[name]
        except KeyError:
            raise InvalidInputError(
                f"no queue {name!r} in this group; queues: {', '.join(self.queues)}"
            ) from None

    @property
    def names(self) -> list[str]:
        return list(self.queues)

    # -- reading -----------------------------------------------------------
    def get_queue_stats(self) -> dict[str, dict[str, int]]:
        """``get_queue_stats()`` of each queue, by queue name."""
        return {name: q.get_queue_stats() for name, q in self.queues.items()}

    def stats_frame(self) -> pd.DataFrame:
        """One row per queue: ``queue`` (string), then the stats frame's columns
        (timestamp of that queue's snapshot, queue_length, processing_count,
        high/normal/low_priority, ttl_seconds), in the group's order.
        """
        return self._combine(lambda q: q.stats_frame())

    def pending_jobs_frame(self, limit: int | None = None) -> pd.DataFrame:
        """The pending jobs of every queue: ``queue`` (string), then the pending
        frame's columns (job_frames.PENDING_COLUMNS: rank within its queue, id, ...).

        ``limit`` applies per queue. Rows are grouped by queue in the group's
        order, each queue's jobs in dequeue order; passwords are redacted.
        ``attrs`` sums the left-out counts (orphans, corrupt, not_pending).
        """
        frames = {name: q.pending_jobs_frame(limit) for name, q in self.queues.items()}
        combined = self._concat(frames)
        for count in ("orphans", "corrupt", "not_pending"):
            combined.attrs[count] = sum(int(f.attrs.get(count, 0)) for f in frames.values())
        return combined

    def processing_frame(self) -> pd.DataFrame:
        """The jobs held by workers in every queue: ``queue`` (string), then the
        processing frame's columns (job_frames.PROCESSING_COLUMNS), each queue's
        longest held first.
        """
        return self._combine(lambda q: q.processing_frame())

    def _combine(self, frame_of: Any) -> pd.DataFrame:
        return self._concat({name: frame_of(q) for name, q in self.queues.items()})

    @staticmethod
    def _concat(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
        parts = []
        for name, frame in frames.items():
            frame = frame.copy()
            frame.attrs = {}
            frame.insert(0, QUEUE_COLUMN, pd.Series([name] * len(frame), index=frame.index,
                                                    dtype="string"))
            parts.append(frame)
        non_empty = [part for part in parts if len(part)]
        # concatenating only empty frames keeps the first one's dtypes
        combined = pd.concat(non_empty or parts[:1], ignore_index=True)
        return combined

    # -- connection ----------------------------------------------------------
    def health(self) -> dict[str, bool]:
        """Whether each queue's server answers PING, by queue name."""
        return {name: q.health() for name, q in self.queues.items()}

    def close(self) -> None:
        """Closes the clients of every queue."""
        closed: set[int] = set()
        for q in self.queues.values():
            if id(q.redis) not in closed:
                closed.add(id(q.redis))
                q.close()

    def __enter__(self) -> QueueGroup:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
