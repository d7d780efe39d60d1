"""MonitorMetrics: a queue's health and its jobs' flow as Prometheus metrics (prometheus-client).

The monitor service feeds it and Prometheus scrapes it:

    metrics = MonitorMetrics([q1, q2])            # one QueueService per prefix
    metrics.serve("127.0.0.1", 9108)              # GET /metrics, loopback by default
    metrics.observe_events(q1.keys.prefix, chunk) # after each drain of that queue's recorder
    metrics.set_health(q1.keys.prefix, {"events_received": ..., "gaps": ..., "malformed": ...,
                                        "flush_lag_s": ...})
    metrics.refresh()                             # on a timer (or metrics.start_refreshing(2.0))

Gauges come from the queue itself, one round trip per queue per refresh
(``QueueService.queue_gauges``: exact pending counts by level, processing,
stalled, and which of the oldest jobs seen added still wait). Counters and
histograms come from the events, counted chunk by chunk exactly as
``analysis.throughput`` and paired as ``analysis.latency`` (``job_tracker``).
Every metric carries the queue's prefix as its ``queue`` label.

Without the monitor service, ``MonitorMetrics.run_with_recorders`` records the
queues itself and serves the same metrics.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from botrix_toolkit.core import arguments
from botrix_toolkit.core.errors import BotrixError, InvalidInputError
from botrix_toolkit.core.queue import QueueService
from botrix_toolkit.monitor.exposition import (
    PRIORITY_LEVELS_SHOWN,
    RUN_BUCKETS,
    WAIT_BUCKETS,
    Histogram,
    QueueState,
    metric_families,
    zero_counts,
)
from botrix_toolkit.monitor.job_tracker import DEFAULT_MAX_OPEN_JOBS, ChunkResult, JobTracker

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from botrix_toolkit.frames.events import EventRecorder
    from botrix_toolkit.monitor.service import MonitorService

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_REFRESH_S = 2.0
# A worker's lease (Worker(lease_s=30), renewed every 10 s): a job whose lease
# was not renewed for longer is held by a worker that has stopped.
DEFAULT_LEASE_S = 30.0
# Oldest followed jobs whose presence in the queue each refresh checks.
OLDEST_CANDIDATES = 16
# An undecided failure whose job took no step for this long was final (job_tracker).
FAILURE_DECIDED_AFTER_S = 30.0
# A queue is read whole again (jobs queued, none followed) at most this often.
RESEED_AFTER_S = 60.0
HEALTH_KEYS = ("events_received", "gaps", "malformed", "flush_lag_s")


class MonitorMetrics:
    """Prometheus metrics for one or more queues, in a registry of their own.

    ``queues``: QueueServices (one per prefix; the prefix is the ``queue``
    label). ``lease_s``: a job in processing whose lease was not renewed for
    longer is stalled (use the workers' ``Worker(lease_s=...)``).
    ``max_open_jobs``: queued or running jobs followed per queue for the wait
    and run times and the oldest pending job (memory stays bounded; see
    ``job_tracker``). ``health_source``: called on each refresh, returns
    ``{queue: health}`` for ``set_health``. Thread-safe: events, health and refreshes may come from
    different threads, and a scrape sees a consistent state.
    """

    def __init__(
        self,
        queues: Iterable[QueueService],
        *,
        lease_s: float = DEFAULT_LEASE_S,
        max_open_jobs: int = DEFAULT_MAX_OPEN_JOBS,
        health_source: Callable[[], Mapping[str, Mapping[str, Any]]] | None = None,
    ) -> None:
        self.lease_s = arguments.seconds("lease_s", lease_s)
        self.health_source = health_source
        self._lock = threading.Lock()
        self._queues: dict[str, QueueState] = {}
        for service in queues:
            name = service.keys.prefix
            if name in self._queues:
                raise InvalidInputError(f"queue {name!r} is given twice")
            self._queues[name] = QueueState(
                service=service, tracker=JobTracker(max_open_jobs), counts=zero_counts(),
                wait={label: Histogram(WAIT_BUCKETS) for label in PRIORITY_LEVELS_SHOWN},
                run={label: Histogram(RUN_BUCKETS) for label in PRIORITY_LEVELS_SHOWN},
            )
        if not self._queues:
            raise InvalidInputError("MonitorMetrics needs at least one queue")
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_Collector(self))
        self._server: WSGIServer | None = None
        self._server_thread: threading.Thread | None = None
        self._refresher: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def queue_names(self) -> list[str]:
        """The ``queue`` label values: the prefixes, in the order given."""
        return list(self._queues)

    def _state(self, queue: str) -> QueueState:
        try:
            return self._queues[queue]
        except KeyError:
            raise InvalidInputError(f"no queue {queue!r} in these metrics; they have {list(self._queues)}") from None

    # -- what the monitor service calls -------------------------------------------

    def observe_events(self, queue: str, events: pd.DataFrame) -> None:
        """Count a chunk of ``queue``'s events: the rows received since the last call, in order.

        ``events`` has the recorder's events-frame columns (``received_at``,
        ``event``, ``job_id``, ``status``, ``priority``; ``timestamp`` and
        ``data`` are optional). Give each row once: the counters add up.
        """
        state = self._state(queue)
        with self._lock:
            self._add(state, state.tracker.observe(events))

    def set_health(self, queue: str, health: Mapping[str, Any]) -> None:
        """The recorder's own health for ``queue``: totals so far, and the flush lag.

        Keys (each optional): ``events_received``, ``gaps``, ``malformed``
        (running totals of that queue's recorder) and ``flush_lag_s`` (seconds
        since every event it had received was last on disk).
        """
        state = self._state(queue)
        unknown = set(health) - set(HEALTH_KEYS)
        if unknown:
            raise InvalidInputError(f"unknown health keys {sorted(unknown)}; expected some of {HEALTH_KEYS}")
        values = {}
        for key, value in health.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise InvalidInputError(f"health {key!r} must be a number >= 0; got {value!r}")
            values[key] = float(value)
        with self._lock:
            state.health.update(values)

    def refresh(self) -> None:
        """Read every queue's gauges: one round trip per queue (two more the first time, see below).

        After its gauges, the first refresh of a queue also reads when each
        job already queued was added (``QueueService.iter_pending_since``,
        chunked; the gauges are set before it), so that the oldest pending
        job is known before the monitor saw any add; so does a refresh that
        finds jobs queued and none followed (after a gap), at most once a
        minute. A queue that cannot be read keeps its last values and counts an
        error.
        """
        if self.health_source is not None:
            try:
                for name, health in self.health_source().items():
                    self.set_health(name, health)
            except Exception:  # the gauges are still worth reading
                logger.exception("metrics could not read the monitor's health")
        for name, state in self._queues.items():
            try:
                self._refresh_queue(state)
            except BotrixError as exc:
                with self._lock:
                    state.refresh_errors += 1
                logger.warning("metrics refresh of queue %r failed: %s", name, exc)

    def _refresh_queue(self, state: QueueState) -> None:
        service = state.service
        with self._lock:
            candidates = state.tracker.oldest_pending(OLDEST_CANDIDATES)
            decided = state.tracker.decide_overdue_failures(FAILURE_DECIDED_AFTER_S)
            state.counts += decided
        gauges = service.queue_gauges(self.lease_s, [job_id for job_id, _ in candidates])
        now_ns = time.time_ns()
        gone = [job_id for (job_id, _), queued in zip(candidates, gauges.still_queued) if not queued]
        waiting = [added for (_, added), queued in zip(candidates, gauges.still_queued) if queued]
        total_pending = sum(gauges.pending.values())
        with self._lock:
            state.tracker.forget_pending(gone)
            if not waiting and total_pending:
                # Checked next time: the oldest of the rest; with none left, the queue is read again.
                rest = state.tracker.oldest_pending(1)
                waiting = [added for _, added in rest]
                if not rest and state.tracker.followed < state.tracker.max_open_jobs:
                    state.seeded = False
            state.pending = dict(gauges.pending)
            state.processing = gauges.processing
            state.stalled = gauges.stalled
            if not total_pending:
                state.oldest_pending_s = 0.0
            elif waiting:
                state.oldest_pending_s = max(0.0, (now_ns - waiting[0]) / 1e9)
            else:
                state.oldest_pending_s = None  # not known until the queue is read
            state.refreshed_at = time.time()
        if total_pending and not state.seeded and time.monotonic() - state.seeded_at >= RESEED_AFTER_S:
            # Jobs queued that no event showed (before the monitor started, or during a
            # gap): read the queue once, after the gauges, which need not wait for it.
            self._seed(state, offset_ns=now_ns - gauges.server_time_ms * 1_000_000)
            with self._lock:
                oldest = state.tracker.oldest_pending(1)
                if oldest:
                    state.oldest_pending_s = max(0.0, (time.time_ns() - oldest[0][1]) / 1e9)

    def _seed(self, state: QueueState, offset_ns: int) -> None:
        """Follow the jobs already queued, aged by their status key (queries.iter_pending_since).

        ``offset_ns``: our clock minus the server's; events are timed on ours.
        """
        for chunk in state.service.iter_pending_since():
            since_ns = [None if ms is None else ms * 1_000_000 + offset_ns for ms in chunk.since_ms]
            with self._lock:
                state.tracker.seed_pending(chunk.ids, chunk.priorities, since_ns)
        state.seeded, state.seeded_at = True, time.monotonic()

    def _add(self, state: QueueState, result: ChunkResult) -> None:
        state.counts += result.counts
        for histograms, observed in ((state.wait, result.wait_s), (state.run, result.run_s)):
            for label, seconds in observed.items():
                if label not in histograms:
                    histograms[label] = Histogram(WAIT_BUCKETS)
                histograms[label].observe(seconds)

    # -- serving -------------------------------------------------------------------

    def serve(self, host: str = DEFAULT_HOST, port: int = 0) -> str:
        """Serve ``GET /metrics`` from a background thread; returns its URL.

        Binds to loopback unless told otherwise (the metrics hold no secret,
        but queue names and load are nobody else's business); port 0 picks a
        free one.
        """
        if self._server is not None:
            raise InvalidInputError(f"metrics are already served at {self.url}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise InvalidInputError(f"port must be an int in 0..65535; got {port!r}")
        try:
            self._server, self._server_thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise InvalidInputError(f"cannot serve metrics on {host}:{port}: {exc}") from exc
        logger.info("serving metrics at %s", self.url)
        return str(self.url)

    @property
    def url(self) -> str | None:
        """``http://host:port/metrics`` while served, else None."""
        if self._server is None:
            return None
        address, port = self._server.server_address[:2]
        host = address.decode() if isinstance(address, bytes) else str(address)
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}/metrics"

    def start_refreshing(self, interval_s: float = DEFAULT_REFRESH_S) -> None:
        """Call ``refresh()`` now and every ``interval_s`` seconds from a daemon thread."""
        if self._refresher is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while True:
                try:
                    self.refresh()
                except Exception:  # a refresh must never end the thread
                    logger.exception("metrics refresh failed")
                if self._stop.wait(interval_s):
                    return

        self._refresher = threading.Thread(target=loop, name="botrix-metrics-refresh", daemon=True)
        self._refresher.start()

    def close(self) -> None:
        """Stop refreshing and serving."""
        self._stop.set()
        if self._refresher is not None:
            self._refresher.join(10)
            self._refresher = None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._server_thread is not None:
            self._server_thread.join(5)
            self._server_thread = None

    def __enter__(self) -> MonitorMetrics:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- standalone ----------------------------------------------------------------

    @classmethod
    def run_with_recorders(
        cls,
        queues: Sequence[QueueService],
        *,
        host: str = DEFAULT_HOST,
        port: int = 0,
        refresh_s: float = DEFAULT_REFRESH_S,
        drain_s: float = 1.0,
        stop: threading.Event | None = None,
        on_ready: Callable[[MonitorMetrics], None] | None = None,
        **options: Any,
    ) -> MonitorMetrics:
        """Record each queue with an ``EventRecorder`` and serve its metrics, until ``stop`` is set.

        For use without the monitor service (``botrix monitor``): blocks,
        draining the recorders every ``drain_s`` seconds and refreshing the
        gauges every ``refresh_s``. ``on_ready(metrics)`` is called once the
        recorders are subscribed and the metrics served (``metrics.url``).
        Returns the (closed) metrics.
        """
        from botrix_toolkit.frames.events import EventRecorder

        stop = stop or threading.Event()
        metrics = cls(queues, **options)
        recorders = {q.keys.prefix: EventRecorder(q) for q in queues}
        drains = {name: _RecorderDrain(recorder) for name, recorder in recorders.items()}
        try:
            for recorder in recorders.values():
                recorder.start()
            metrics.serve(host, port)
            metrics.start_refreshing(refresh_s)
            if on_ready is not None:
                on_ready(metrics)
            while True:
                stopping = stop.wait(drain_s)
                for name, drain in drains.items():
                    metrics.observe_events(name, drain.new_rows())
                    metrics.set_health(name, drain.health())
                if stopping:
                    return metrics
        finally:
            for recorder in recorders.values():
                recorder.stop()
            metrics.close()


def start_metrics(
    service: MonitorService,
    host: str = DEFAULT_HOST,
    port: int = 0,
    *,
    refresh_s: float = DEFAULT_REFRESH_S,
    lease_s: float = DEFAULT_LEASE_S,
) -> str:
    """Serve the metrics of a ``MonitorService`` (``botrix monitor --metrics-port``); returns the URL.

    Reads the same server and prefixes as the service, counts the events it
    drains (registered as one of its ``observers``, on a thread of its own so
    that the flush thread never waits for the counting unless the counting
    falls a hundred drains behind) and shows its health. The threads are
    daemons: they end with the process.
    """
    metrics = metrics_for_service(service, lease_s=lease_s)
    service.observers.append(BackgroundCounting(metrics))
    url = metrics.serve(host, port)
    metrics.start_refreshing(refresh_s)
    return url


def metrics_for_service(service: MonitorService, *, lease_s: float = DEFAULT_LEASE_S) -> MonitorMetrics:
    """The metrics of a ``MonitorService``'s queues, neither served nor fed events yet (``start_metrics`` does both).

    Each refresh reads every queue's ``service.queue_health(prefix)``: the
    ``botrix_monitor_*`` health metrics of a queue are its own recorder's.
    """
    queues = [QueueService.from_url(service.url, prefix=prefix) for prefix in service.prefixes]
    return MonitorMetrics(queues, lease_s=lease_s, health_source=lambda: _queue_health(service))


def _queue_health(service: MonitorService) -> dict[str, dict[str, Any]]:
    """Each queue's ``service.queue_health(prefix)``, in the keys ``MonitorMetrics.set_health`` takes."""
    return {prefix: {key: value for key, value in service.queue_health(prefix).items() if key in HEALTH_KEYS}
            for prefix in service.prefixes}


class BackgroundCounting:
    """A ``MonitorService`` observer that hands each drained chunk to a thread counting it, in order, none dropped.

    ``events_counted``: the rows counted so far (the benchmark waits on it).
    ``close()`` lets the chunks already handed over be counted, then ends the thread.
    """

    def __init__(self, metrics: MonitorMetrics, backlog: int = 100) -> None:
        self.metrics = metrics
        self.events_counted = 0
        self._chunks: queue.Queue[tuple[str, pd.DataFrame] | None] = queue.Queue(maxsize=backlog)
        self._thread = threading.Thread(target=self._count, name="botrix-metrics-events", daemon=True)
        self._thread.start()

    def __call__(self, prefix: str, events: pd.DataFrame) -> None:
        if len(events):
            # Without the job data (JSON text, most of a chunk's memory): the counters never read it.
            counted = events.drop(columns=["data"], errors="ignore")
            self._chunks.put((prefix, counted))  # waits only when `backlog` chunks are behind

    def close(self, timeout_s: float = 60.0) -> None:
        self._chunks.put(None)
        self._thread.join(timeout_s)

    def _count(self) -> None:
        while (chunk := self._chunks.get()) is not None:
            prefix, events = chunk
            try:
                self.metrics.observe_events(prefix, events)
            except Exception:  # one bad chunk must not stop the counting of the next
                logger.exception("metrics could not count %d events of %r", len(events), prefix)
            self.events_counted += len(events)


class _RecorderDrain:
    """The rows an EventRecorder received since the last call, found by receive time.

    The events frame is in receive order and rows read from one socket chunk
    share a receive time, so the last time taken and how many rows had it
    mark where the next call starts.
    """

    def __init__(self, recorder: EventRecorder) -> None:
        self.recorder = recorder
        self._last_ns: int | None = None
        self._taken_at_last = 0
        self._counters: dict[str, Any] = {}

    def new_rows(self) -> pd.DataFrame:
        snapshot = self.recorder.snapshot()
        self._counters = dict(snapshot.counters)
        events = snapshot.events
        if events.empty:
            return events
        received = pd.DatetimeIndex(events["received_at"]).as_unit("ns").asi8
        if self._last_ns is None:
            start = 0
        else:
            start = int(np.searchsorted(received, self._last_ns, side="left")) + self._taken_at_last
        new = events.iloc[start:]
        if len(new):
            self._last_ns = int(received[-1])
            self._taken_at_last = int((received == received[-1]).sum())
        return new

    def health(self) -> dict[str, float]:
        counters = self._counters
        return {"events_received": counters.get("received", 0), "gaps": counters.get("gaps", 0),
                "malformed": counters.get("malformed", 0), "flush_lag_s": 0.0}


class _Collector(Collector):
    """Builds every metric family from the state at scrape time."""

    def __init__(self, metrics: MonitorMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        metrics = self.metrics
        with metrics._lock:
            yield from metric_families(metrics._queues)
