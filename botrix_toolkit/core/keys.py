"""Every Redis key and channel name of a botrix queue, and nothing else.

Every module of the package takes key names from here. Two places spell them
on purpose: the Lua scripts get keys through KEYS, and the two that pop ids
(claim_jobs, recover_stalled) add an id to a prefix passed from here in ARGV;
``bench/frames.py``'s raw baselines spell the keys the way the Go service does.
The layout is the Go service's (``backend/services/queue.go``), so both can
serve one queue at the same time; docs/wire-format.md describes each key.
Keys we add (``leases``, ``sequence``) live under the same prefix, so a cluster hash tag in
the prefix (``{botrix:jobs}``) keeps every key of a queue on one node.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from botrix_toolkit.core.errors import InvalidInputError

DEFAULT_PREFIX = "botrix:jobs"


@dataclass(frozen=True)
class QueueKeys:
    """The names of one queue's keys, built from its prefix."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not self.prefix or not isinstance(self.prefix, str):
            raise InvalidInputError(f"queue prefix must be a non-empty string, got {self.prefix!r}")

    # cached_property: these names are built on every operation's hot path.
    @cached_property
    def queue(self) -> str:
        """Sorted set of pending job ids; score ``-priority`` from Go, inside ``(-priority-1, -priority)``
        from the toolkit (docs/wire-format.md, "Scores")."""
        return f"{self.prefix}:queue"

    @cached_property
    def processing(self) -> str:
        """Set of job ids taken by a worker and not yet finished."""
        return f"{self.prefix}:processing"

    @cached_property
    def leases(self) -> str:
        """Sorted set: job id -> server time (ms) its lease was last taken or renewed.

        Not known to the Go service; it is how stalled jobs are found.
        """
        return f"{self.prefix}:leases"

    @cached_property
    def sequence(self) -> str:
        """String counter: how many jobs the toolkit has placed at the back of a level.

        Not known to the Go service; it orders jobs first in, first out within
        a level (docs/wire-format.md, "Scores"), the same for every producer.
        """
        return f"{self.prefix}:sequence"

    @cached_property
    def script_head(self) -> tuple[str, str, str]:
        """(queue, processing, leases): the first KEYS of every script that moves jobs."""
        return (self.queue, self.processing, self.leases)

    @cached_property
    def updates(self) -> str:
        """The pub/sub channel of job events (a channel, not a key)."""
        return f"{self.prefix}:updates"

    @cached_property
    def data_prefix(self) -> str:
        return f"{self.prefix}:data:"

    @cached_property
    def status_prefix(self) -> str:
        return f"{self.prefix}:status:"

    @cached_property
    def results_prefix(self) -> str:
        return f"{self.prefix}:results:"

    def data(self, job_id: str) -> str:
        """String: the job as JSON."""
        return self.data_prefix + job_id

    def status(self, job_id: str) -> str:
        """String: the job's authoritative status."""
        return self.status_prefix + job_id

    def results(self, job_id: str) -> str:
        """String: the job's result as JSON."""
        return self.results_prefix + job_id
