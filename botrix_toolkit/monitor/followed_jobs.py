"""FollowedJobs: what ``JobTracker`` keeps of each job between chunks, as parallel arrays.

One slot per job, its fields in numpy arrays, so that a chunk's jobs are read
and written with array operations; only finding a job's slot by its id goes
through a dict. Text (event names, statuses, states) is kept as codes into the
tracker's ``analysis.TextCodes``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: An unknown time in ``added_ns`` / ``started_ns``.
NO_TIME = np.iinfo(np.int64).min
# Where a slot is filed. UNFILED: taken or being moved, filed by the caller next.
FREE, OPEN, FINISHED, UNFILED = range(4)
#: How many rows a job carries into its next chunk at most: its last state and its last step.
CARRIED_ROWS = 2


class FollowedJobs:
    """The jobs a tracker follows: open (queued, running or undecided) or finished.

    Fields per slot (arrays indexed by slot): ``ids``; ``where`` (FREE, OPEN,
    FINISHED); ``priority`` and ``priority_known`` (of the current attempt);
    ``state`` (text code, -1: none seen); ``row_event``, ``row_status`` (text
    codes, -1: missing) and ``row_count``: the rows to put in front of the
    job's next rows; ``added_ns``, ``started_ns`` (the current attempt's, ns
    since the Unix epoch, NO_TIME: unknown); ``attempt_open`` (added and not
    ended yet); ``finished_order`` (when it was filed finished: the oldest go first).
    """

    def __init__(self) -> None:
        self._slot_of: dict[str, int] = {}
        self._free: list[int] = []
        self._used = 0  # slots ever handed out: the rest of the arrays is spare
        self._finished_filed = 0
        self.ids = np.empty(0, dtype=object)
        self.where = np.zeros(0, dtype=np.int8)
        self.priority = np.zeros(0, dtype=np.int64)
        self.priority_known = np.zeros(0, dtype=bool)
        self.state = np.zeros(0, dtype=np.int64)
        self.row_event = np.zeros((0, CARRIED_ROWS), dtype=np.int64)
        self.row_status = np.zeros((0, CARRIED_ROWS), dtype=np.int64)
        self.row_count = np.zeros(0, dtype=np.int64)
        self.added_ns = np.zeros(0, dtype=np.int64)
        self.started_ns = np.zeros(0, dtype=np.int64)
        self.attempt_open = np.zeros(0, dtype=bool)
        self.finished_order = np.zeros(0, dtype=np.int64)
        self._grow(1)  # never empty: slot 0 can stand in where a job has none

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._slot_of

    def count(self, where: int) -> int:
        return int(np.count_nonzero(self.where == where))

    def find(self, job_ids: Sequence[str]) -> np.ndarray:
        """Each job's slot (open or finished), -1 for a job not followed."""
        slot_of = self._slot_of.get
        return np.array([slot_of(job_id, -1) for job_id in job_ids], dtype=np.int64)

    def take(self, job_ids: Sequence[str]) -> np.ndarray:
        """New UNFILED slots for jobs not followed, their fields unknown."""
        reuse = min(len(job_ids), len(self._free))
        reused = self._free[len(self._free) - reuse:]
        del self._free[len(self._free) - reuse:]
        fresh = np.arange(self._used, self._used + len(job_ids) - len(reused), dtype=np.int64)
        self._used += len(fresh)
        self._grow(self._used)
        slots = np.concatenate([np.asarray(reused, dtype=np.int64), fresh])
        self._slot_of.update(zip(job_ids, slots.tolist()))
        self.ids[slots] = job_ids
        self.where[slots] = UNFILED
        self.priority_known[slots] = False
        self.state[slots] = -1
        self.row_count[slots] = 0
        self.added_ns[slots] = NO_TIME
        self.started_ns[slots] = NO_TIME
        self.attempt_open[slots] = False
        return slots

    def release(self, slots: np.ndarray) -> None:
        """Forget these jobs."""
        for job_id in self.ids[slots].tolist():
            del self._slot_of[job_id]
        self.ids[slots] = None
        self.where[slots] = FREE
        self._free.extend(slots.tolist())

    def file_finished(self, slots: np.ndarray, kept: int) -> None:
        """File these jobs as finished, latest last, and forget the oldest finished past ``kept``."""
        self.where[slots] = FINISHED
        self.finished_order[slots] = np.arange(self._finished_filed, self._finished_filed + len(slots))
        self._finished_filed += len(slots)
        finished = np.flatnonzero(self.where == FINISHED)
        excess = len(finished) - kept
        if excess > 0:
            oldest = np.argpartition(self.finished_order[finished], excess - 1)[:excess]
            self.release(finished[oldest])

    def _grow(self, size: int) -> None:
        capacity = len(self.where)
        if size <= capacity:
            return
        extra = max(size, 2 * capacity, 1024) - capacity
        self.ids = np.concatenate([self.ids, np.full(extra, None, dtype=object)])
        self.where = np.concatenate([self.where, np.full(extra, FREE, dtype=np.int8)])
        for name in ("priority", "priority_known", "state", "row_count", "added_ns", "started_ns",
                     "attempt_open", "finished_order"):
            values = getattr(self, name)
            setattr(self, name, np.concatenate([values, np.zeros(extra, dtype=values.dtype)]))
        for name in ("row_event", "row_status"):
            setattr(self, name, np.concatenate([getattr(self, name), np.full((extra, CARRIED_ROWS), -1)]))
