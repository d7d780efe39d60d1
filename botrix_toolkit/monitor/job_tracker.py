"""JobTracker: counts a queue's events chunk by chunk exactly as ``analysis.throughput`` counts them.

``analysis`` reads a whole recorded history at once. A monitor sees it in
chunks (one per drain of the recorder) and must not keep it all, yet a chunk
boundary may fall anywhere: between the ``status_updated(completed)`` and the
``job_completed`` of one completion, or between a ``status_updated(failed)``
and the ``job_added`` that makes it a requeue. So the tracker keeps, per job
still in play, the one or two rows that decide how its next rows read (its
last state and its last step) and puts them in front of the job's rows in
the next chunk before ``analysis.classify_codes`` (the array form of
``classify_events``) reads them; those rows are never counted twice. A
failure that is a chunk's last step of its job waits for the job's next step
to tell a final failure from a requeue.

It also pairs each attempt's add, claim and end across chunks, as
``analysis.latency`` does, for the wait and run times, and knows when each
pending job it saw added entered the queue (the oldest pending job).

Memory is bounded: at most ``max_open_jobs`` queued or running jobs are
followed (past that, new jobs are counted but not followed: their priority
is unknown and their times are not measured; a job whose next step decides
how its last one counts is kept a chunk longer, so the counts stay exact)
and the last ``FINISHED_KEPT`` finished ones.

A chunk is read as arrays: text as codes, each job's rows grouped by one
stable sort (``analysis.JobRows``), the followed jobs as parallel arrays
(``followed_jobs``); no Python runs per row, and per job only to find it by id.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from botrix_toolkit.core import arguments
from botrix_toolkit.frames.analysis import (
    ADD_KINDS,
    PRIORITY_LEVELS,
    JobRows,
    RowClasses,
    TextCodes,
    classify_codes,
    event_times_ns,
    priority_label,
    require_columns,
)
from botrix_toolkit.monitor.followed_jobs import NO_TIME, OPEN, UNFILED, FollowedJobs

logger = logging.getLogger(__name__)

#: What the counters count, the names of ``analysis.THROUGHPUT_COLUMNS`` less ``started``.
COUNTED_KINDS: tuple[str, ...] = ("added", "started", "completed", "failed", "cancelled", "requeued", "recovered")
#: The priority label of a job whose add the tracker did not see.
UNKNOWN_PRIORITY = "unknown"
PRIORITY_LABELS: tuple[str, ...] = (*PRIORITY_LEVELS, UNKNOWN_PRIORITY)
DEFAULT_MAX_OPEN_JOBS = 100_000  # about 25 MB: some 250 bytes per job followed, its id included
# Finished jobs remembered: a completion's two messages may be split between chunks.
FINISHED_KEPT = 20_000
_END_STATES = ("completed", "failed", "cancelled")
_NS = 1_000_000_000
_UNKNOWN_LABEL = PRIORITY_LABELS.index(UNKNOWN_PRIORITY)
_FAILED = COUNTED_KINDS.index("failed")


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


@dataclass
class _Chunk:
    """A chunk's rows after the rows carried in front of them, as arrays (row: carried then new)."""

    job_ids: list[str]  # by job code: the chunk's jobs in order of first appearance
    slots: np.ndarray  # by job code: its FollowedJobs slot before the chunk, -1 if not followed
    first_new: int  # rows before it are carried
    event: np.ndarray  # by row: text codes as received (-1: missing)
    status: np.ndarray
    job: np.ndarray  # by row: job code, -1 without a job id
    time: np.ndarray  # by row: ns since the tracker's epoch as float64 (exact), NaN unknown or carried
    jobs: JobRows
    classes: RowClasses
    priority: np.ndarray  # by row: the priority of its attempt (carried forward from its add)
    priority_known: np.ndarray
    label: np.ndarray  # by row: index into PRIORITY_LABELS
    is_step: np.ndarray  # not the status_updated(pending) an add publishes first
    last_step: np.ndarray  # the job's last step in the chunk
    undecided: np.ndarray  # a failure with no later step of its job yet


@dataclass
class _Attempts:
    """By job code: its last attempt in the chunk (times as in ``_Chunk.time``)."""

    added: np.ndarray
    started: np.ndarray
    open: np.ndarray


class JobTracker:
    """Counts events chunk by chunk as ``analysis.throughput`` counts the whole history.

    ``observe(chunk)`` takes events-frame rows (``frames.event_frames.EVENT_COLUMNS``:
    at least event, job_id, status, priority and received_at or timestamp), in
    receive order, each row once, and returns a ``ChunkResult``. Not thread-safe:
    the caller serialises calls.
    """

    def __init__(self, max_open_jobs: int = DEFAULT_MAX_OPEN_JOBS) -> None:
        self.max_open_jobs = arguments.whole_number("max_open_jobs", max_open_jobs, 1)
        self._jobs = FollowedJobs()
        self._text = TextCodes()
        # Jobs whose last failure is undecided -> monotonic time it was left so; in the order deferred.
        self._deferred: dict[str, float] = {}
        self.untracked = 0  # times a job was turned away because max_open_jobs were followed
        self._epoch_ns: int | None = None  # times are kept relative to it while computed

    # -- reading chunks ------------------------------------------------------

    def observe(self, events: pd.DataFrame) -> ChunkResult:
        """Count one chunk of events; see the class docstring."""
        if events.empty:
            return ChunkResult(_counts_frame(np.zeros((len(COUNTED_KINDS), len(PRIORITY_LABELS)))), {}, {})
        chunk = self._read(events)
        counts = self._count(chunk)
        wait_s, run_s, attempts = self._attempt_times(chunk)
        self._remember(chunk, attempts)
        return ChunkResult(counts, wait_s, run_s)

    def _read(self, events: pd.DataFrame) -> _Chunk:
        """The chunk as codes, each followed job's carried rows in front, read by the rule."""
        require_columns(events, ("event", "job_id", "status"), "events")
        codes = self._text.code
        new_job, uniques = pd.factorize(events["job_id"].astype("str"))
        job_ids: list[str] = np.asarray(uniques, dtype=object).tolist()
        slots = self._jobs.find(job_ids)
        carried_job, carried_slot, carried_index = self._carried_rows(slots)
        first_new = len(carried_job)
        event = np.concatenate([self._jobs.row_event[carried_slot, carried_index], self._text.encode(events["event"])])
        status = np.concatenate([self._jobs.row_status[carried_slot, carried_index],
                                 self._text.encode(events["status"])])
        job = np.concatenate([carried_job, new_job])
        jobs = JobRows(job)
        classes = classify_codes(event, status, jobs, self._text)

        # Each row's attempt priority: its job_added's (or the carried one), carried forward.
        given = events["priority"].astype("Int64")
        own_priority = np.concatenate([self._jobs.priority[carried_slot], given.to_numpy("int64", na_value=0)])
        own_known = np.concatenate([self._jobs.priority_known[carried_slot], given.notna().to_numpy()])
        is_new = np.arange(len(job)) >= first_new
        own_known &= (event == codes("job_added")) | ~is_new
        source = jobs.last_marked(own_known)
        priority_known = source >= 0
        priority = np.where(priority_known, own_priority[source], 0)

        is_step = ~((event == codes("status_updated")) & (classes.status == codes("pending")))
        last_step = is_step & (jobs.next_marked(is_step) < 0)
        failed = classes.transition & (classes.state == codes("failed")) & ~classes.requeue_failure
        return _Chunk(
            job_ids=job_ids, slots=slots, first_new=first_new, event=event, status=status, job=job,
            time=np.concatenate([np.full(first_new, np.nan), self._times_since_epoch(events)]),
            jobs=jobs, classes=classes, priority=priority, priority_known=priority_known,
            label=_label_codes(priority, priority_known), is_step=is_step, last_step=last_step,
            undecided=failed & last_step,
        )

    def _carried_rows(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(job code, slot, index among the job's kept rows) of each row to put in front of the chunk."""
        followed = np.flatnonzero(slots >= 0)  # in order of first appearance, as the rows come
        kept = self._jobs.row_count[slots[followed]]
        index = np.arange(int(kept.sum())) - np.repeat(np.cumsum(kept) - kept, kept)
        return np.repeat(followed, kept), np.repeat(slots[followed], kept), index

    def _times_since_epoch(self, events: pd.DataFrame) -> np.ndarray:
        # float64 holds ns since the tracker's epoch exactly (since the Unix epoch it
        # would round to 256 ns), and NaN marks a missing time.
        absolute = event_times_ns(events)
        missing = absolute == np.iinfo(np.int64).min
        if self._epoch_ns is None and not missing.all():
            self._epoch_ns = int(absolute[~missing].min())
        times = (absolute - (self._epoch_ns or 0)).astype("float64")
        times[missing] = np.nan
        return times

    def _count(self, chunk: _Chunk) -> pd.DataFrame:
        """The chunk's new rows counted by kind and label, and the deferred failures it decides."""
        classes, codes = chunk.classes, self._text.code
        changed_to = {state: classes.transition & (classes.state == codes(state))
                      for state in ("running", "completed", "failed", "cancelled")}
        flags = {
            "added": classes.add_kind == ADD_KINDS.index("added"),
            "started": changed_to["running"],
            "completed": changed_to["completed"],
            "failed": changed_to["failed"] & ~classes.requeue_failure & ~chunk.undecided,
            "cancelled": changed_to["cancelled"],
            "requeued": classes.add_kind == ADD_KINDS.index("requeued"),
            "recovered": classes.add_kind == ADD_KINDS.index("recovered"),
        }
        new_label = chunk.label[chunk.first_new:]
        table = np.stack([np.bincount(new_label[flags[kind][chunk.first_new:]], minlength=len(PRIORITY_LABELS))
                          for kind in COUNTED_KINDS])
        table[_FAILED] += self._decide_deferred(chunk)
        return _counts_frame(table)

    def _decide_deferred(self, chunk: _Chunk) -> np.ndarray:
        """Failures left undecided by the chunks before, decided now that their job took another step.

        Returns the final ones by label; the requeued ones were counted as requeues.
        """
        if not self._deferred:
            return np.zeros(len(PRIORITY_LABELS), dtype=np.int64)
        deferred_job = np.isin(chunk.slots, self._jobs.find(list(self._deferred)))
        decided = chunk.is_step & ~chunk.last_step
        decided[chunk.first_new:] = False  # only a carried step can be a deferred failure
        decided[:chunk.first_new] &= deferred_job[chunk.job[:chunk.first_new]]
        for code in chunk.job[decided].tolist():
            del self._deferred[chunk.job_ids[code]]
        final = decided & ~chunk.classes.requeue_failure
        return np.bincount(chunk.label[final], minlength=len(PRIORITY_LABELS))

    def _attempt_times(self, chunk: _Chunk) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], _Attempts]:
        """Wait and run seconds of the attempts claimed or ended in the chunk, as analysis.latency pairs them.

        An attempt runs from a job_added to the next; its start is its first
        change to running, its end the first change to completed, failed or
        cancelled, or a job_recovered. Returns the seconds by label and, per
        job code, its last attempt.
        """
        classes, codes = chunk.classes, self._text.code
        rows = np.flatnonzero((np.arange(len(chunk.job)) >= chunk.first_new) & (chunk.job >= 0))
        is_add = chunk.event == codes("job_added")
        # An attempt is named by its first row: its add, or the job's first row of the chunk
        # for the attempt that goes on from the chunks before (attempt 0).
        last_add = chunk.jobs.last_marked(is_add & (np.arange(len(chunk.job)) >= chunk.first_new))
        first_row = np.full(len(chunk.job_ids), len(chunk.job))
        np.minimum.at(first_row, chunk.job[rows], rows)
        leader = np.where(last_add[rows] >= 0, last_add[rows], first_row[chunk.job[rows]])
        leaders, group = np.unique(leader, return_inverse=True)  # attempts in order of first appearance
        attempt_job = chunk.job[leaders]
        later_attempt = is_add[leaders]
        last_row = np.full(len(leaders), -1)
        np.maximum.at(last_row, group, rows)

        def first_time(marked: np.ndarray) -> np.ndarray:
            """Per attempt, the time of its first marked row with a known time (NaN if none)."""
            chosen = marked[rows] & ~np.isnan(chunk.time[rows])
            present, first = np.unique(group[chosen], return_index=True)
            found = np.full(len(leaders), np.nan)
            found[present] = chunk.time[rows[chosen][first]]
            return found

        starts = classes.transition & (classes.state == codes("running"))
        ends = (classes.transition & np.isin(classes.state, [codes(state) for state in _END_STATES])) | (
            chunk.event == codes("job_recovered"))
        first_start, ends_at = first_time(starts), first_time(ends)
        carried_added, carried_started = self._open_attempts(np.where(later_attempt, -1, chunk.slots[attempt_job]))
        in_attempt = later_attempt | ~np.isnan(carried_added)
        added = np.where(later_attempt, chunk.time[leaders], carried_added)
        started = np.where(np.isnan(carried_started), first_start, carried_started)
        wait = np.where(in_attempt & np.isnan(carried_started), (first_start - added) / _NS, np.nan)
        run = np.where(in_attempt, (ends_at - started) / _NS, np.nan)
        labels = chunk.label[last_row]

        last_attempt = np.full(len(chunk.job_ids), -1)
        np.maximum.at(last_attempt, attempt_job, np.arange(len(leaders)))
        attempts = _Attempts(added=added[last_attempt], started=started[last_attempt],
                             open=(in_attempt & np.isnan(ends_at))[last_attempt])
        return _by_label(wait, labels), _by_label(run, labels), attempts

    def _open_attempts(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(added, started) of the open attempt each slot's job left off with (NaN: none, unknown; -1: no slot)."""
        jobs, epoch = self._jobs, self._epoch_ns or 0
        slot = np.maximum(slots, 0)
        going_on = (slots >= 0) & (jobs.where[slot] == OPEN) & jobs.attempt_open[slot]

        def since_epoch(ns: np.ndarray) -> np.ndarray:
            known = going_on & (ns[slot] != NO_TIME)
            return np.where(known, (np.where(known, ns[slot], epoch) - epoch).astype("float64"), np.nan)

        return since_epoch(jobs.added_ns), since_epoch(jobs.started_ns)

    def _remember(self, chunk: _Chunk, attempts: _Attempts) -> None:
        """Keep, per job of the chunk, its last state row and last step row, its attempt and its state."""
        jobs, count, epoch = self._jobs, len(chunk.job_ids), self._epoch_ns or 0
        last_state_at = _last_position(chunk.job, chunk.classes.state >= 0, count)
        last_step_at = _last_position(chunk.job, chunk.is_step, count)
        # Each row is a step or a state row, so every job has a first row to keep.
        both = (last_state_at >= 0) & (last_step_at >= 0)
        first_at = np.where(both, np.minimum(last_state_at, last_step_at), np.maximum(last_state_at, last_step_at))
        second_at = np.where(both & (last_state_at != last_step_at), np.maximum(last_state_at, last_step_at), -1)
        has_second = second_at >= 0
        last_at = _last_position(chunk.job, np.ones(len(chunk.job), dtype=bool), count)

        slots = chunk.slots.copy()
        followed = slots >= 0
        slots[~followed] = jobs.take([chunk.job_ids[code] for code in np.flatnonzero(~followed).tolist()])
        jobs.row_event[slots, 0], jobs.row_status[slots, 0] = chunk.event[first_at], chunk.status[first_at]
        jobs.row_event[slots, 1] = np.where(has_second, chunk.event[second_at], -1)
        jobs.row_status[slots, 1] = np.where(has_second, chunk.status[second_at], -1)
        jobs.row_count[slots] = 1 + has_second
        jobs.priority[slots], jobs.priority_known[slots] = chunk.priority[last_at], chunk.priority_known[last_at]
        has_state = last_state_at >= 0
        jobs.state[slots[has_state]] = chunk.classes.state[last_state_at[has_state]]
        added_known = ~np.isnan(attempts.added)
        jobs.added_ns[slots[added_known]] = attempts.added[added_known].astype(np.int64) + epoch
        started_known = ~np.isnan(attempts.started)
        jobs.started_ns[slots] = NO_TIME
        jobs.started_ns[slots[started_known]] = attempts.started[started_known].astype(np.int64) + epoch
        jobs.attempt_open[slots] = attempts.open

        # As the rows came: the jobs followed before (their carried rows lead), then the new ones.
        order = np.concatenate([np.flatnonzero(followed), np.flatnonzero(~followed)])
        undecided = np.zeros(count, dtype=bool)
        undecided[chunk.job[chunk.undecided & (chunk.job >= 0)]] = True
        now = time.monotonic()
        for code in order[undecided[order]].tolist():
            self._deferred[chunk.job_ids[code]] = now
        self._file(slots[order], was_open=jobs.where[slots[order]] == OPEN)

    def _file(self, slots: np.ndarray, was_open: np.ndarray) -> None:
        """File jobs, in this order, as open (queued, running or undecided) or finished."""
        jobs, codes = self._jobs, self._text.code
        deferred = np.isin(slots, jobs.find(list(self._deferred)))
        finished = np.isin(jobs.state[slots], [codes(state) for state in _END_STATES]) & ~deferred & (
            ~jobs.attempt_open[slots])
        # Past the limit a job is turned away, unless its next step decides how a
        # step already seen counts (an undecided failure, a recovery): counting stays exact.
        recovering = (jobs.row_event[slots] == codes("job_recovered")).any(axis=1)
        admitted = self._admit(was_open, finished, deferred | recovering)
        jobs.where[slots[~finished & admitted]] = OPEN
        turned_away = slots[~finished & ~admitted]
        self.untracked += len(turned_away)
        jobs.release(turned_away)
        jobs.file_finished(slots[finished], FINISHED_KEPT)

    def _admit(self, was_open: np.ndarray, finished: np.ndarray, exempt: np.ndarray) -> np.ndarray:
        """Which of the jobs filed in this order are open after it: the limit holds for those not open before."""
        staying = ~finished & was_open
        arriving = ~finished & ~was_open
        open_now = self._jobs.count(OPEN)
        if open_now + np.count_nonzero(arriving) <= self.max_open_jobs:
            return staying | arriving
        # Near the limit the order matters: a job finishing makes room for the jobs after it.
        admitted = staying.copy()
        for index, (arrives, leaves, free_pass) in enumerate(
                zip(arriving.tolist(), (finished & was_open).tolist(), exempt.tolist())):
            if leaves:
                open_now -= 1
            elif arrives and (open_now < self.max_open_jobs or free_pass):
                admitted[index] = True
                open_now += 1
        return admitted

    # -- decisions that need no new chunk --------------------------------------

    def decide_overdue_failures(self, older_than_s: float = 30.0) -> pd.DataFrame:
        """Count as failed the undecided failures whose job took no step for ``older_than_s``.

        A requeue publishes its failure and its add in one script, so a
        failure still undecided that long was final; ``analysis.throughput``
        counts a failure with no later step the same way. Returns the counts
        (as ``ChunkResult.counts``).
        """
        table = np.zeros((len(COUNTED_KINDS), len(PRIORITY_LABELS)), dtype=np.int64)
        cutoff = time.monotonic() - older_than_s
        jobs = self._jobs
        for job_id, deferred_at in list(self._deferred.items()):
            if deferred_at <= cutoff:
                del self._deferred[job_id]
                slot = jobs.find([job_id])
                table[_FAILED, _label_codes(jobs.priority[slot], jobs.priority_known[slot])] += 1
                jobs.where[slot] = UNFILED  # leaves the open jobs, then is filed again
                self._file(slot, was_open=np.zeros(1, dtype=bool))
        return _counts_frame(table)

    # -- pending jobs ----------------------------------------------------------

    def seed_pending(self, job_ids: list[str], priorities: list[int], since_ns: list[int | None]) -> int:
        """Follow queued jobs the tracker did not see added (the queue before it started).

        ``since_ns``: when each entered the queue (None: unknown, not followed).
        Jobs already followed are left as they are. Returns how many were added.
        """
        jobs = self._jobs
        room = self.max_open_jobs - jobs.count(OPEN)
        chosen: dict[str, tuple[int, int]] = {}
        for job_id, priority, since in zip(job_ids, priorities, since_ns):
            if since is None or job_id in chosen or job_id in jobs:
                continue
            if len(chosen) >= room:
                self.untracked += 1
                continue
            chosen[job_id] = (int(priority), int(since))
        slots = jobs.take(list(chosen))
        priority_and_since = np.array(list(chosen.values()), dtype=np.int64).reshape(-1, 2)
        jobs.row_event[slots, 0], jobs.row_status[slots, 0] = self._text.code("job_added"), self._text.code("pending")
        jobs.row_count[slots] = 1
        jobs.priority[slots], jobs.priority_known[slots] = priority_and_since[:, 0], True
        jobs.state[slots] = self._text.code("pending")
        jobs.added_ns[slots] = priority_and_since[:, 1]
        jobs.attempt_open[slots] = True
        jobs.where[slots] = OPEN
        return len(slots)

    def oldest_pending(self, n: int) -> list[tuple[str, int]]:
        """Up to ``n`` (job id, added ns) of the followed queued jobs, oldest first."""
        if n <= 0:
            return []
        jobs = self._jobs
        slots = np.flatnonzero((jobs.where == OPEN) & (jobs.state == self._text.code("pending"))
                               & jobs.attempt_open & (jobs.added_ns != NO_TIME))
        if len(slots) > n:  # the n oldest and any tied with the last of them
            slots = slots[jobs.added_ns[slots] <= np.partition(jobs.added_ns[slots], n - 1)[n - 1]]
        oldest = sorted(zip(jobs.added_ns[slots].tolist(), jobs.ids[slots].tolist()))[:n]
        return [(job_id, added_ns) for added_ns, job_id in oldest]

    def forget_pending(self, job_ids: list[str]) -> None:
        """Stop following jobs found gone from the queue (their claim was missed, e.g. in a gap)."""
        slots = self._jobs.find(list(dict.fromkeys(job_ids)))
        slots = slots[slots >= 0]
        self._jobs.release(slots[self._jobs.where[slots] == OPEN])
        for job_id in job_ids:
            self._deferred.pop(job_id, None)  # an undecided job is always open

    @property
    def followed(self) -> int:
        """Queued and running jobs followed now."""
        return self._jobs.count(OPEN)


def _counts_frame(table: np.ndarray) -> pd.DataFrame:
    """``ChunkResult.counts`` from a (kind, label) table."""
    return pd.DataFrame(table.T.astype(np.int64), index=pd.Index(PRIORITY_LABELS, name="priority"),
                        columns=list(COUNTED_KINDS))


def _label_codes(priority: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Each priority's index into PRIORITY_LABELS, levelled by ``analysis.priority_label`` (unknown where not known)."""
    values, value_of = np.unique(priority[known], return_inverse=True)
    levels = priority_label(pd.Series(values, dtype="int64")).astype(str).tolist()
    labels = np.full(len(priority), _UNKNOWN_LABEL, dtype=np.int64)
    labels[known] = np.array([PRIORITY_LABELS.index(level) for level in levels], dtype=np.int64)[value_of]
    return labels


def _last_position(job: np.ndarray, where: np.ndarray, count: int) -> np.ndarray:
    """Per job code 0..count-1, the last row where ``where`` holds, or -1."""
    last = np.full(count, -1, dtype=np.int64)
    chosen = np.flatnonzero(where & (job >= 0))
    np.maximum.at(last, job[chosen], chosen)
    return last


def _by_label(seconds: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Known seconds (>= 0) of each label, labels in order of first appearance."""
    known = ~np.isnan(seconds) & (seconds >= 0)
    present, first = np.unique(labels[known], return_index=True)
    return {PRIORITY_LABELS[label]: seconds[known & (labels == label)] for label in present[np.argsort(first)]}
