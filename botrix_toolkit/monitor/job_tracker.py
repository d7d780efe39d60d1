"""JobTracker: counts a queue's events chunk by chunk exactly as ``analysis.throughput`` counts them.

``analysis`` reads a whole recorded history at once. A monitor sees it in
chunks (one per drain of the recorder) and must not keep it all, yet a chunk
boundary may fall anywhere: between the ``status_updated(completed)`` and the
``job_completed`` of one completion, or between a ``status_updated(failed)``
and the ``job_added`` that makes it a requeue. So the tracker keeps, per job
still in play, the one or two rows that decide how its next rows read (its
last state and its last step) and puts them in front of the job's rows in
the next chunk before ``analysis.classify_events`` reads them; those rows
are never counted twice. A failure that is a chunk's last step of its job
waits for the job's next step to tell a final failure from a requeue.

It also pairs each attempt's add, claim and end across chunks, as
``analysis.latency`` does, for the wait and run times, and knows when each
pending job it saw added entered the queue (the oldest pending job).

Memory is bounded: at most ``max_open_jobs`` queued or running jobs are
followed (past that, new jobs are counted but not followed: their priority
is unknown and their times are not measured; a job whose next step decides
how its last one counts is kept a chunk longer, so the counts stay exact)
and the last ``FINISHED_KEPT`` finished ones.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from botrix_toolkit.frames.analysis import PRIORITY_LEVELS, classify_events, priority_label

logger = logging.getLogger(__name__)

#: What the counters count, the names of ``analysis.THROUGHPUT_COLUMNS`` less ``started``.
COUNTED_KINDS: tuple[str, ...] = ("added", "started", "completed", "failed", "cancelled", "requeued", "recovered")
#: The priority label of a job whose add the tracker did not see.
UNKNOWN_PRIORITY = "unknown"
PRIORITY_LABELS: tuple[str, ...] = (*PRIORITY_LEVELS, UNKNOWN_PRIORITY)
DEFAULT_MAX_OPEN_JOBS = 100_000  # about 50 MB: some 480 bytes per job followed
# Finished jobs remembered: a completion's two messages may be split between chunks.
FINISHED_KEPT = 20_000
_END_STATES = ("completed", "failed", "cancelled")
_FINAL = frozenset(_END_STATES)
_NS = 1_000_000_000


@dataclass
class ChunkResult:
    """What one chunk added: counts by kind and priority label, wait and run seconds by label.

    ``counts``: int64 frame, index PRIORITY_LABELS, columns COUNTED_KINDS.
    ``wait_s`` / ``run_s``: label -> float64 array of seconds (one per attempt
    whose claim, resp. end, is in the chunk).
    """

    counts: pd.DataFrame
    wait_s: dict[str, np.ndarray]
    run_s: dict[str, np.ndarray]


class _Job:
    """What the tracker keeps of one job between chunks."""

    __slots__ = ("rows", "priority", "state", "added_ns", "started_ns", "attempt_open", "deferred_at")

    def __init__(self) -> None:
        self.rows: tuple[tuple[str, str | None], ...] = ()  # (event, status) rows to put in front
        self.priority: int | None = None  # of the current attempt
        self.state: str | None = None  # pending, running, completed, ...
        self.added_ns: int | None = None  # the current attempt's add (ns since the epoch)
        self.started_ns: int | None = None
        self.attempt_open = False  # added and not ended yet
        self.deferred_at: float | None = None  # monotonic time its last failure was left undecided


class JobTracker:
    """Counts events chunk by chunk as ``analysis.throughput`` counts the whole history.

    ``observe(chunk)`` takes events-frame rows (``frames.event_frames.EVENT_COLUMNS``:
    at least event, job_id, status, priority and received_at or timestamp), in
    receive order, each row once, and returns a ``ChunkResult``. Not thread-safe:
    the caller serialises calls.
    """

    def __init__(self, max_open_jobs: int = DEFAULT_MAX_OPEN_JOBS) -> None:
        if isinstance(max_open_jobs, bool) or not isinstance(max_open_jobs, int) or max_open_jobs < 1:
            raise ValueError(f"max_open_jobs must be a positive int, got {max_open_jobs!r}")
        self.max_open_jobs = max_open_jobs
        self._open: dict[str, _Job] = {}
        self._finished: OrderedDict[str, _Job] = OrderedDict()
        # (added ns, job id) of jobs seen entering the queue; stale entries are skipped lazily.
        self._pending_heap: list[tuple[int, str]] = []
        self._deferred: dict[str, _Job] = {}
        self.untracked = 0  # times a job was turned away because max_open_jobs were followed
        self._epoch_ns: int | None = None  # times are kept relative to it while computed

    # -- reading chunks ------------------------------------------------------

    def observe(self, events: pd.DataFrame) -> ChunkResult:
        """Count one chunk of events; see the class docstring."""
        counts = pd.DataFrame(0, index=pd.Index(PRIORITY_LABELS, name="priority"),
                              columns=list(COUNTED_KINDS), dtype="int64")
        if events.empty:
            return ChunkResult(counts, {}, {})
        carried = self._carried_rows(events["job_id"])
        combined = pd.concat([carried, _event_columns(events)], ignore_index=True) if len(carried) else (
            _event_columns(events))
        rows = classify_events(combined)
        first_new = len(carried)
        is_new = np.arange(len(rows)) >= first_new

        # Each row's attempt priority: its job_added's (or the carried one), carried forward.
        own = combined["priority"].astype("Int64").where((rows["event"] == "job_added").to_numpy() | ~is_new)
        priority = own.groupby(rows["job"].to_numpy(), sort=False).ffill()
        labelled = priority_label(priority).astype(object).where(priority.notna(), UNKNOWN_PRIORITY)
        label: np.ndarray = labelled.fillna(UNKNOWN_PRIORITY).to_numpy()

        is_update = (rows["event"] == "status_updated").to_numpy()
        is_step = ~(is_update & (rows["status"] == "pending").to_numpy())
        step_positions = np.flatnonzero(is_step)
        last_step = np.zeros(len(rows), dtype=bool)
        last_step[pd.Series(step_positions).groupby(rows["job"].to_numpy()[step_positions]).max().to_numpy()] = True

        state = rows["state"]
        transition = rows["transition"].to_numpy()
        requeue_failure = rows["requeue_failure"].to_numpy()
        failed = transition & (state == "failed").to_numpy() & ~requeue_failure
        # A failure with no later step of its job yet: undecided until the next chunk.
        undecided = failed & last_step
        flags = {
            "added": (rows["add_kind"] == "added").to_numpy(),
            "started": transition & (state == "running").to_numpy(),
            "completed": transition & (state == "completed").to_numpy(),
            "failed": failed & ~undecided,
            "cancelled": transition & (state == "cancelled").to_numpy(),
            "requeued": (rows["add_kind"] == "requeued").to_numpy(),
            "recovered": (rows["add_kind"] == "recovered").to_numpy(),
        }
        for kind, flag in flags.items():
            hits = pd.Series(label[flag & is_new]).value_counts()
            counts.loc[hits.index, kind] += hits.to_numpy()

        # Failures left undecided by the chunk before: decided once the job takes another step.
        if self._deferred:
            job_ids = rows["job_id"].to_numpy(dtype=object)
            decided = ~is_new & is_step & ~last_step & np.isin(job_ids, list(self._deferred))
            for position in np.flatnonzero(decided):
                job = self._deferred.pop(job_ids[position])
                job.deferred_at = None
                if not requeue_failure[position]:
                    _count_one(counts, str(label[position]), "failed")

        codes, uniques = pd.factorize(rows["job_id"])  # the same codes as rows["job"]
        job_ids = np.asarray(uniques, dtype=object)
        wait_s, run_s, attempts = self._attempt_times(rows, codes, job_ids, first_new, priority, label)
        self._remember(rows, codes, job_ids, combined, is_step, undecided, priority, attempts)
        return ChunkResult(counts, wait_s, run_s)

    def _lookup(self, job_id: str) -> _Job | None:
        job = self._open.get(job_id)
        return job if job is not None else self._finished.get(job_id)

    def _carried_rows(self, job_ids: pd.Series) -> pd.DataFrame:
        """The rows kept of the chunk's jobs seen before, to go in front of the chunk."""
        events, ids, statuses, priorities = [], [], [], []
        for job_id in pd.unique(job_ids.dropna().to_numpy(dtype=object)).tolist():
            job = self._lookup(job_id)
            if job is None:
                continue
            for event, status in job.rows:
                events.append(event)
                ids.append(job_id)
                statuses.append(status)
                priorities.append(job.priority)
        return pd.DataFrame({
            "received_at": pd.Series(pd.NaT, index=range(len(ids)), dtype="datetime64[ns, UTC]"),
            "event": pd.array(events, dtype="string"),
            "job_id": pd.array(ids, dtype="string"),
            "status": pd.array(statuses, dtype="string"),
            "priority": pd.array(priorities, dtype="Int64"),
        })

    def _attempt_times(
        self, rows: pd.DataFrame, codes: np.ndarray, job_ids: np.ndarray, first_new: int, priority: pd.Series,
        label: np.ndarray,
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], pd.DataFrame]:
        """Wait and run seconds of the attempts claimed or ended in the chunk, as analysis.latency pairs them.

        An attempt runs from a job_added to the next; its start is its first
        change to running, its end the first change to completed, failed or
        cancelled, or a job_recovered. Returns the seconds by label and, per
        job code, its last attempt (added, started: ns since the epoch; open, priority).
        """
        new = rows.iloc[first_new:]
        job = codes[first_new:]  # -1: no job id, belongs to no job
        # Nanoseconds since the tracker's epoch: float64 holds them exactly (since the
        # Unix epoch it would round to 256 ns), and NaN marks a missing time.
        absolute = pd.DatetimeIndex(new["time"]).as_unit("ns").asi8
        missing = new["time"].isna().to_numpy()
        if self._epoch_ns is None and not missing.all():
            self._epoch_ns = int(absolute[~missing].min())
        epoch = self._epoch_ns or 0
        times = (absolute - epoch).astype("float64")
        times[missing] = np.nan
        is_add = (new["event"] == "job_added").to_numpy()
        attempt = pd.Series(is_add.astype("int64")).groupby(job, sort=False).cumsum().to_numpy()
        transition, state = new["transition"].to_numpy(), new["state"]
        starts = transition & (state == "running").to_numpy()
        ends = (transition & state.isin(_END_STATES).to_numpy()) | (new["event"] == "job_recovered").to_numpy()
        valid = job >= 0
        frame = pd.DataFrame({"job": job, "attempt": attempt, "time": times,
                              "priority": priority.iloc[first_new:].to_numpy(),
                              "label": label[first_new:]})
        keys = ["job", "attempt"]
        table = frame[valid].groupby(keys, sort=False).agg(priority=("priority", "last"), label=("label", "last"))
        table["added"] = frame[is_add & valid].groupby(keys)["time"].first()
        table["first_start"] = frame[starts & valid].groupby(keys)["time"].first()
        table["first_end"] = frame[ends & valid].groupby(keys)["time"].first()
        table = table.reset_index()

        # Attempt 0 continues the job's open attempt from the chunks before, if any.
        carried_added, carried_started = [], []
        for code, number in zip(table["job"].to_numpy(), table["attempt"].to_numpy()):
            known = self._open.get(job_ids[code]) if number == 0 else None
            if known is not None and known.attempt_open:
                carried_added.append(_since(known.added_ns, epoch))
                carried_started.append(_since(known.started_ns, epoch))
            else:
                carried_added.append(None)
                carried_started.append(None)
        carried_added_ns = pd.array(carried_added, dtype="Float64").to_numpy(dtype="float64", na_value=np.nan)
        carried_started_ns = pd.array(carried_started, dtype="Float64").to_numpy(dtype="float64", na_value=np.nan)
        in_attempt = (table["attempt"] > 0).to_numpy() | ~np.isnan(carried_added_ns)
        added = np.where(table["attempt"] > 0, table["added"].to_numpy(), carried_added_ns)
        first_start = table["first_start"].to_numpy()
        started = np.where(np.isnan(carried_started_ns), first_start, carried_started_ns)
        ends_at = table["first_end"].to_numpy()
        wait = np.where(in_attempt & np.isnan(carried_started_ns), (first_start - added) / _NS, np.nan)
        run = np.where(in_attempt, (ends_at - started) / _NS, np.nan)
        labels = table["label"].to_numpy()
        wait_s = _by_label(wait, labels)
        run_s = _by_label(run, labels)

        last = table.assign(added=added, started=started, in_attempt=in_attempt,
                            open=in_attempt & np.isnan(ends_at))
        last = last.drop_duplicates("job", keep="last").set_index("job")
        return wait_s, run_s, last[["added", "started", "open", "priority"]]

    def _remember(
        self, rows: pd.DataFrame, codes: np.ndarray, job_ids: np.ndarray, combined: pd.DataFrame,
        is_step: np.ndarray, undecided: np.ndarray, priority: pd.Series, attempts: pd.DataFrame,
    ) -> None:
        """Keep, per job of the chunk, its last state row and last step row, its attempt and its state."""
        count = len(job_ids)
        positions = np.arange(len(rows))
        has_state = rows["state"].notna().to_numpy()
        last_state_at = _last_position(codes, positions, has_state, count)
        last_step_at = _last_position(codes, positions, is_step, count)
        # The rows to keep, as (event, status) pairs of shared strings: one or two per job.
        event, status, state = _shared_text(combined["event"]), _shared_text(combined["status"]), _shared_text(
            rows["state"])
        first_at = np.where((last_state_at >= 0) & (last_state_at < last_step_at), last_state_at, last_step_at)
        first_at = np.where(first_at < 0, last_state_at, first_at)
        second_at = np.where((last_state_at >= 0) & (last_step_at >= 0) & (last_state_at != last_step_at),
                             np.maximum(last_state_at, last_step_at), -1)
        first_rows = list(zip(event[first_at].tolist(), status[first_at].tolist()))
        second_rows = list(zip(event[second_at].tolist(), status[second_at].tolist()))
        last_state = np.asarray(np.where(last_state_at >= 0, state[last_state_at], None)).tolist()
        last_priority = priority.groupby(codes).last().reindex(range(count)).astype("Float64")
        attempts = attempts.reindex(range(count))
        undecided_jobs = set(rows["job_id"][undecided].dropna())
        now, epoch = time.monotonic(), self._epoch_ns or 0
        lookup, place, heap = self._lookup, self._place, self._pending_heap
        for job_id, first, second, has_second, job_state, prio, added, started, attempt_open in zip(
            job_ids.tolist(), first_rows, second_rows, (second_at >= 0).tolist(), last_state,
            last_priority.to_numpy(dtype="float64", na_value=np.nan).tolist(),
            attempts["added"].to_numpy(dtype="float64").tolist(),
            attempts["started"].to_numpy(dtype="float64").tolist(),
            attempts["open"].to_numpy(dtype=object).tolist(),
        ):
            job = lookup(job_id)
            if job is None:
                job = _Job()
            job.rows = (first, second) if has_second else (first,)
            job.priority = int(prio) if prio == prio else None  # NaN: unknown
            if job_state is not None:
                job.state = job_state
            if attempt_open is True or attempt_open is False:
                if added == added and job.added_ns != int(added) + epoch:
                    job.added_ns = int(added) + epoch
                    if attempt_open:
                        heapq.heappush(heap, (job.added_ns, job_id))
                job.started_ns = int(started) + epoch if started == started else None
                job.attempt_open = attempt_open
            if job_id in undecided_jobs:
                job.deferred_at = now
                self._deferred[job_id] = job
            place(job_id, job)

    def _place(self, job_id: str, job: _Job) -> None:
        """File a job as open (queued, running or undecided) or finished."""
        finished = job.state in _FINAL and job.deferred_at is None and not job.attempt_open
        if finished:
            self._open.pop(job_id, None)
            self._finished[job_id] = job
            self._finished.move_to_end(job_id)
            while len(self._finished) > FINISHED_KEPT:
                self._finished.popitem(last=False)
            return
        self._finished.pop(job_id, None)
        # Past the limit a job is turned away, unless its next step decides how a
        # step already seen counts (an undecided failure, a recovery): counting stays exact.
        if job_id not in self._open and len(self._open) >= self.max_open_jobs and not (
                job.deferred_at is not None or any(event == "job_recovered" for event, _ in job.rows)):
            self.untracked += 1
            return
        self._open[job_id] = job

    # -- decisions that need no new chunk --------------------------------------

    def decide_overdue_failures(self, older_than_s: float = 30.0) -> pd.DataFrame:
        """Count as failed the undecided failures whose job took no step for ``older_than_s``.

        A requeue publishes its failure and its add in one script, so a
        failure still undecided that long was final; ``analysis.throughput``
        counts a failure with no later step the same way. Returns the counts
        (as ``ChunkResult.counts``).
        """
        counts = pd.DataFrame(0, index=pd.Index(PRIORITY_LABELS, name="priority"),
                              columns=list(COUNTED_KINDS), dtype="int64")
        cutoff = time.monotonic() - older_than_s
        for job_id, job in list(self._deferred.items()):
            if job.deferred_at is not None and job.deferred_at <= cutoff:
                job.deferred_at = None
                del self._deferred[job_id]
                _count_one(counts, _label_of(job.priority), "failed")
                self._open.pop(job_id, None)
                self._place(job_id, job)
        return counts

    # -- pending jobs ----------------------------------------------------------

    def seed_pending(self, job_ids: list[str], priorities: list[int], since_ns: list[int | None]) -> int:
        """Follow queued jobs the tracker did not see added (the queue before it started).

        ``since_ns``: when each entered the queue (None: unknown, not followed).
        Jobs already followed are left as they are. Returns how many were added.
        """
        added = 0
        for job_id, priority, since in zip(job_ids, priorities, since_ns):
            if since is None or self._lookup(job_id) is not None:
                continue
            if len(self._open) >= self.max_open_jobs:
                self.untracked += 1
                continue
            job = _Job()
            job.rows = (("job_added", "pending"),)
            job.priority, job.state, job.added_ns, job.attempt_open = int(priority), "pending", int(since), True
            self._open[job_id] = job
            heapq.heappush(self._pending_heap, (job.added_ns, job_id))
            added += 1
        return added

    def oldest_pending(self, n: int) -> list[tuple[str, int]]:
        """Up to ``n`` (job id, added ns) of the followed queued jobs, oldest first."""
        heap = self._pending_heap
        found: list[tuple[str, int]] = []
        kept: list[tuple[int, str]] = []
        while heap and len(found) < n:
            added_ns, job_id = heapq.heappop(heap)
            job = self._open.get(job_id)
            if job is None or job.added_ns != added_ns or job.state != "pending" or not job.attempt_open:
                continue  # claimed, ended or re-added since: a stale entry
            found.append((job_id, added_ns))
            kept.append((added_ns, job_id))
        for entry in kept:
            heapq.heappush(heap, entry)
        if len(heap) > 2 * len(self._open) + 1024:
            self._pending_heap = [(j.added_ns, i) for i, j in self._open.items()
                                  if j.state == "pending" and j.attempt_open and j.added_ns is not None]
            heapq.heapify(self._pending_heap)
        return found

    def forget_pending(self, job_ids: list[str]) -> None:
        """Stop following jobs found gone from the queue (their claim was missed, e.g. in a gap)."""
        for job_id in job_ids:
            job = self._open.pop(job_id, None)
            if job is not None and job.deferred_at is not None:
                self._deferred.pop(job_id, None)

    @property
    def followed(self) -> int:
        """Queued and running jobs followed now."""
        return len(self._open)


def _event_columns(events: pd.DataFrame) -> pd.DataFrame:
    columns = [c for c in ("received_at", "timestamp", "event", "job_id", "status", "priority") if c in events]
    return events[columns].reset_index(drop=True)


def _count_one(counts: pd.DataFrame, label: str, kind: str) -> None:
    cells: Any = counts.at  # pandas-stubs types a cell as any scalar, where this one is an int
    cells[label, kind] += 1


def _since(ns: int | None, epoch: int) -> int | None:
    return None if ns is None else ns - epoch


def _last_position(codes: np.ndarray, positions: np.ndarray, where: np.ndarray, count: int) -> np.ndarray:
    """Per job code 0..count-1, the last position where ``where`` holds, or -1."""
    last = np.full(count, -1, dtype=np.int64)
    chosen = where & (codes >= 0)
    np.maximum.at(last, codes[chosen], positions[chosen])
    return last


def _by_label(seconds: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    known = ~np.isnan(seconds) & (seconds >= 0)
    return {label: seconds[known & (labels == label)] for label in pd.unique(labels[known])}


def _label_of(priority: int | None) -> str:
    if priority is None:
        return UNKNOWN_PRIORITY
    return str(priority_label(pd.Series([priority])).iat[0])


def _shared_text(column: pd.Series) -> np.ndarray:
    """The column as an object array of one string object per distinct value (None where missing).

    A job keeps a few of these per row it carries: shared, they cost nothing per job.
    """
    codes, uniques = pd.factorize(column)
    names = np.asarray([str(name) for name in uniques] + [None], dtype=object)
    return names[codes]  # code -1 (missing) picks the trailing None
