"""Worker: runs a handler on each job of a queue, with leases, retries and graceful stop.

The loop runs in the calling thread and does all claiming and finishing; the
handlers run on ``concurrency`` daemon threads, and one more thread renews the
leases of every job held (so ``recover_stalled`` on another machine never takes
back a job that is still being worked on). Daemon threads, not an executor:
after a second SIGTERM the process must be able to exit while a handler is
still stuck, its job already handed back to the queue (``release_jobs``:
unfinished, not failed, its priority and retry count unchanged).

Retries: a failing job is requeued (Go's FailJob: priority lowered by one)
while its retry count, kept in the job JSON as the extra field ``retries``
(Go ignores unknown fields), is below ``max_retries``; then it fails for good.
"""

from __future__ import annotations

import dataclasses
import logging
import queue as thread_queue
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

from botrix_toolkit.core import arguments
from botrix_toolkit.core.errors import (
    AccessDeniedError,
    InvalidInputError,
    JobStateError,
    ServerConnectionError,
    ServerTimeoutError,
)
from botrix_toolkit.core.models import Job
from botrix_toolkit.core.queue import QueueService
from botrix_toolkit.core.redaction import REDACTED, secret_values

logger = logging.getLogger(__name__)

Handler = Callable[[Job], Any]

RETRIES_FIELD = "retries"


@dataclass
class WorkerStats:
    """What one ``Worker.run`` did: jobs claimed, completed, failed for good, requeued, returned."""

    claimed: int = 0
    completed: int = 0
    failed: int = 0
    requeued: int = 0
    returned: int = 0

    @property
    def finished(self) -> int:
        return self.completed + self.failed + self.requeued


@dataclass
class _Outcome:
    job: Job
    error: BaseException | None
    result: Any = None


class Worker:
    """Takes jobs from ``q`` and runs ``handler(job)`` on each.

    ``handler`` returns a result (saved with ``save_job_result`` unless None) or
    raises (the job is failed with the exception text, requeued while retries
    remain). ``batch`` jobs are claimed per round trip and completions are sent
    together; ``lease_s`` is the lease the worker keeps alive (renewed every
    ``lease_s / 3``): use a ``recover_stalled`` timeout of at least ``lease_s``.
    """

    def __init__(
        self,
        q: QueueService,
        handler: Handler,
        concurrency: int = 1,
        lease_s: float = 30,
        batch: int = 1,
        max_retries: int = 3,
        poll_interval: float = 0.2,
    ) -> None:
        if not callable(handler):
            raise InvalidInputError(f"handler must be callable; got {handler!r}")
        self.q = q
        self.handler = handler
        self.concurrency = arguments.whole_number("concurrency", concurrency, 1)
        self.lease_s = arguments.seconds("lease_s", lease_s)
        self.batch = arguments.whole_number("batch", batch, 1)
        self.max_retries = arguments.whole_number("max_retries", max_retries, 0)
        self.poll_interval = arguments.seconds("poll_interval", poll_interval)
        self.stats = WorkerStats()
        self._stopping = threading.Event()
        self._aborting = threading.Event()
        self._exited = threading.Event()
        self._held: dict[str, Job] = {}
        self._held_lock = threading.Lock()
        self._todo: thread_queue.SimpleQueue[Job | None] = thread_queue.SimpleQueue()
        self._done: thread_queue.SimpleQueue[_Outcome] = thread_queue.SimpleQueue()
        # Set by the lease renewer when the server refuses us for good.
        self._denied: AccessDeniedError | None = None

    # -- control ---------------------------------------------------------
    def stop(self) -> None:
        """Claim no more jobs; ``run`` returns once the jobs held are finished."""
        self._stopping.set()

    def abort(self) -> None:
        """Stop now: the jobs held are handed back to the queue and ``run`` returns."""
        self._stopping.set()
        self._aborting.set()

    @property
    def held_ids(self) -> list[str]:
        """Ids of the jobs this worker holds right now."""
        with self._held_lock:
            return list(self._held)

    # -- the loop --------------------------------------------------------
    def run(self, max_jobs: int | None = None, until_empty: bool = False) -> WorkerStats:
        """Works until stopped; returns the counts of this run.

        ``max_jobs``: return after claiming (and finishing) that many jobs.
        ``until_empty``: return when the queue is empty and nothing is held.
        SIGTERM/SIGINT (when called from the main thread): the first stops
        claiming and finishes what is held, the second hands it back.
        An unreachable server is waited for; one that refuses the login, the
        certificate or a command (ACL NOPERM) raises AccessDeniedError, as
        waiting would not mend it (jobs held then are recovered when stalled).
        """
        if max_jobs is not None:
            arguments.whole_number("max_jobs", max_jobs, 1)
        self.stats = WorkerStats()
        self._stopping.clear()
        self._aborting.clear()
        self._exited.clear()
        self._denied = None
        previous_handlers = self._install_signal_handlers()
        threads = [threading.Thread(target=self._work, name=f"botrix-worker-{i}", daemon=True)
                   for i in range(self.concurrency)]
        renewer = threading.Thread(target=self._renew, name="botrix-lease-renewer", daemon=True)
        for thread in (*threads, renewer):
            thread.start()
        logger.info("worker started on %r: concurrency %d, batch %d, lease %.1fs",
                    self.q, self.concurrency, self.batch, self.lease_s)
        try:
            self._loop(max_jobs, until_empty)
        finally:
            if self._aborting.is_set():
                self._return_held()
            self._stopping.set()
            self._exited.set()
            for _ in threads:
                self._todo.put(None)
            self._restore_signal_handlers(previous_handlers)
        logger.info("worker stopped: %s", self.stats)
        return self.stats

    def _loop(self, max_jobs: int | None, until_empty: bool) -> None:
        # Claim while a thread would otherwise sit idle; with a batch, keep up
        # to `batch` jobs in hand so one round trip feeds several handler calls.
        in_hand_limit = max(self.concurrency, self.batch)
        unreported: list[_Outcome] = []
        while not self._aborting.is_set():
            if self._denied is not None:
                raise self._denied
            claimed_now = 0
            if not self._stopping.is_set() and not unreported:
                try:
                    claimed_now = self._claim(in_hand_limit, max_jobs)
                except AccessDeniedError:
                    raise  # a refused login or permission: waiting does not mend it
                except (ServerConnectionError, ServerTimeoutError) as exc:
                    logger.warning("cannot claim jobs, retrying: %s", exc)
            held = len(self._held)
            if held == 0:
                if self._stopping.is_set():
                    return
                if max_jobs is not None and self.stats.claimed >= max_jobs:
                    return
                if until_empty and claimed_now == 0:
                    return
            # Wait for an outcome; poll the queue again when idle.
            wait = 0 if claimed_now and held < self.concurrency else self.poll_interval
            unreported = self._finish(unreported + self._collect(wait))

    def _claim(self, in_hand_limit: int, max_jobs: int | None) -> int:
        held = len(self._held)
        if held >= self.concurrency:
            return 0
        wanted = min(self.batch, in_hand_limit - held)
        if max_jobs is not None:
            wanted = min(wanted, max_jobs - self.stats.claimed)
        if wanted <= 0:
            return 0
        jobs = self.q.dequeue_jobs(wanted)
        with self._held_lock:
            for job in jobs:
                self._held[job.id] = job
        for job in jobs:
            self._todo.put(job)
        self.stats.claimed += len(jobs)
        return len(jobs)

    def _collect(self, wait: float) -> list[_Outcome]:
        outcomes: list[_Outcome] = []
        try:
            outcomes.append(self._done.get(timeout=wait) if wait > 0 else self._done.get_nowait())
        except thread_queue.Empty:
            return outcomes
        while True:
            try:
                outcomes.append(self._done.get_nowait())
            except thread_queue.Empty:
                return outcomes

    def _finish(self, outcomes: list[_Outcome]) -> list[_Outcome]:
        """Completes the successes in one round trip, fails or requeues the rest.

        A job stays held (its lease renewed) until the server has its outcome.
        Returns the outcomes not reported because the server could not be
        reached, to be sent again.
        """
        with self._held_lock:
            # A job handed back meanwhile (abort) is no longer ours to report.
            live = [o for o in outcomes if o.job.id in self._held]
        successes = [o.job.id for o in live if o.error is None]
        failures = [o for o in live if o.error is not None]
        try:
            if successes:
                self.q.complete_jobs(successes)
        except AccessDeniedError:
            raise
        except (ServerConnectionError, ServerTimeoutError) as exc:
            logger.warning("cannot complete %d jobs, retrying: %s", len(successes), exc)
            return live
        self._release(successes)
        self.stats.completed += len(successes)
        for position, outcome in enumerate(failures):
            assert outcome.error is not None  # failures are the outcomes with an error
            try:
                self._fail(outcome.job, outcome.error)
            except AccessDeniedError:
                raise
            except (ServerConnectionError, ServerTimeoutError) as exc:
                logger.warning("cannot fail job %s, retrying: %s", outcome.job.id, exc)
                return failures[position:]
            self._release([outcome.job.id])
        return []

    def _release(self, job_ids: list[str]) -> None:
        with self._held_lock:
            for job_id in job_ids:
                self._held.pop(job_id, None)

    def _fail(self, job: Job, error: BaseException) -> None:
        text = _error_text(job, error)
        retries = _retries_of(job)
        try:
            if retries < self.max_retries:
                retry = dataclasses.replace(job, extra={**job.extra, RETRIES_FIELD: retries + 1})
                self.q.fail_job(job.id, requeue=True, job=retry, error=text)
                logger.warning("job %s failed (retry %d of %d follows): %s",
                               job.id, retries + 1, self.max_retries, text)
                self.stats.requeued += 1
            else:
                self.q.fail_job(job.id, requeue=False, error=text)
                logger.warning("job %s failed for good after %d retries: %s", job.id, retries, text)
                self.stats.failed += 1
        except JobStateError as exc:
            # Recovered meanwhile (its lease ran out) or finished elsewhere: no longer ours.
            logger.warning("job %s failed here but is no longer held, nothing recorded: %s", job.id, exc)

    def _return_held(self) -> None:
        """Hands every held job back to the queue with its priority and retry count unchanged."""
        with self._held_lock:
            ids = list(self._held)
            self._held.clear()
        if not ids:
            return
        try:
            returned = self.q.release_jobs(ids)
        except Exception:
            logger.exception("could not hand %d jobs back; they will be recovered when stalled", len(ids))
            return
        self.stats.returned += len(returned)
        logger.warning("handed %d unfinished jobs back to the queue", len(returned))

    # -- threads ---------------------------------------------------------
    def _work(self) -> None:
        while (job := self._todo.get()) is not None:
            if self._aborting.is_set():
                continue
            try:
                result = self.handler(job)
                if result is not None:
                    self.q.save_job_result(job.id, result)
                self._done.put(_Outcome(job, None, result))
            except Exception as exc:
                self._done.put(_Outcome(job, exc))

    def _renew(self) -> None:
        interval = self.lease_s / 3
        # Keeps renewing after stop(): the jobs held are still being finished.
        while not self._exited.wait(interval):
            ids = self.held_ids
            if not ids:
                continue
            try:
                renewed = self.q.renew_leases(ids)
            except AccessDeniedError as exc:
                self._denied = exc  # the loop raises it: the worker stops
                return
            except (ServerConnectionError, ServerTimeoutError) as exc:
                logger.warning("cannot renew the leases of %d jobs, retrying: %s", len(ids), exc)
                continue
            except Exception:
                logger.exception("lease renewal of %d jobs failed", len(ids))
                continue
            if renewed < len(ids):
                logger.warning("%d of %d held jobs are no longer in processing "
                               "(recovered or cancelled elsewhere)", len(ids) - renewed, len(ids))

    # -- signals ---------------------------------------------------------
    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous: dict[int, Any] = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, self._on_signal)
        return previous

    @staticmethod
    def _restore_signal_handlers(previous: dict[int, Any]) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self._stopping.is_set():
            logger.warning("%s again: handing %d held jobs back to the queue",
                           name, len(self._held))
            self.abort()
        else:
            logger.warning("%s: finishing %d held jobs, then stopping (again to hand them back)",
                           name, len(self._held))
            self.stop()


def _retries_of(job: Job) -> int:
    value = job.extra.get(RETRIES_FIELD, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _error_text(job: Job, error: BaseException) -> str:
    """The exception as one line, with the job's secrets (at any depth) blanked if a handler echoed them."""
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    # Longest first: a secret that contains another is blanked whole.
    for secret in sorted(secret_values({"password": job.password, **job.extra}), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text
