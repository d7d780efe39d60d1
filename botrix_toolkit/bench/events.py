"""Benchmark of event capture: EventRecorder against redis-py's PubSub.listen().

A publisher in a separate process sends realistic event messages as fast as
the server takes them (PUBLISH commands packed once, pipelined in batches over
a raw socket). Each subscriber is measured against the same publisher: how
many of the messages sent it received. ``botrix bench`` formats the result;
this module prints nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing as mp
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import hiredis
import redis

from botrix_toolkit.core.errors import OperationError
from botrix_toolkit.frames.events import EventRecorder

logger = logging.getLogger(__name__)

_BATCH = 1000  # PUBLISH commands per pipelined round trip
# Messages packed before the clock starts and sent round and round: 100,000 job lives,
# so a job's id comes back only every second or so, as a counter of jobs would see real traffic.
_RING = 500_000
_IDLE_S = 1.0  # a subscriber that got nothing new for this long is done
_SENTINEL = b"__botrix_bench_end__"

# One job's life on the channel, as the Go service publishes it.
_LIFE = [
    ("status_updated", "pending", None),
    ("job_added", "pending", 1),
    ("status_updated", "running", None),
    ("status_updated", "completed", None),
    ("job_completed", "completed", None),
]


def event_messages(count: int) -> list[bytes]:
    """``count`` event messages (JSON bytes) as the Go service sends them for whole job lives."""
    now = int(time.time())
    out: list[bytes] = []
    job_id = ""
    for i in range(count):
        name, status, priority = _LIFE[i % len(_LIFE)]
        if i % len(_LIFE) == 0:
            job_id = str(uuid.uuid4())
        data: dict[str, Any] = {"job_id": job_id, "status": status}
        if priority is not None:
            data["priority"] = priority
        message = {"event": name, "job_id": job_id, "timestamp": now, "data": data}
        out.append(json.dumps(message, separators=(",", ":")).encode())
    return out


def _pack_publish(channel: bytes, payloads: list[bytes]) -> bytes:
    parts = []
    for payload in payloads:
        parts.append(
            b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"
            % (len(channel), channel, len(payload), payload)
        )
    return b"".join(parts)


def _publisher(
    url: str, channel: str, seconds: float, count: int, ready: Any, go: Any, results: Any
) -> None:
    """Process body: publish flat out for ``seconds`` (or exactly ``count`` messages if > 0)."""
    client = redis.Redis.from_url(url)
    conn = client.connection_pool.get_connection()
    sock = conn._sock
    assert sock is not None, "get_connection() connects"
    sock.settimeout(30)
    messages = event_messages(_RING)
    ring = [_pack_publish(channel.encode(), messages[i : i + _BATCH]) for i in range(0, _RING, _BATCH)]
    del messages
    reader = hiredis.Reader()
    buf = bytearray(1 << 16)
    ready.set()
    go.wait()
    sent = 0
    started = time.perf_counter()
    deadline = started + seconds
    while (sent < count) if count > 0 else (time.perf_counter() < deadline):
        if count > 0 and count - sent < _BATCH:
            n = count - sent
            sock.sendall(_pack_publish(channel.encode(), event_messages(n)))
        else:
            n = _BATCH
            sock.sendall(ring[sent // _BATCH % len(ring)])
        replies = 0
        while replies < n:  # every PUBLISH is answered: count what the server took
            got = sock.recv_into(buf)
            if not got:
                raise ConnectionError("server closed the publisher's connection")
            reader.feed(buf, 0, got)
            while reader.gets() is not False:
                replies += 1
        sent += n
    elapsed = time.perf_counter() - started
    client.connection_pool.release(conn)
    client.close()
    results.put({"sent": sent, "seconds": elapsed})


class FlatOutPublisher:
    """The publisher process of ``flat_out_publisher``, released at ``started``."""

    def __init__(self, process: Any, results: Any, seconds: float) -> None:
        self._process, self._results, self._seconds = process, results, seconds
        self.started = time.perf_counter()

    def wait(self) -> dict[str, Any]:
        """The publisher's report once it is done: ``sent`` and ``seconds``."""
        published: dict[str, Any] = self._results.get(timeout=self._seconds + 120)
        self._process.join(10)
        return published


@contextlib.contextmanager
def flat_out_publisher(url: str, channel: str, seconds: float, count: int) -> Iterator[FlatOutPublisher]:
    """Publishes to ``channel`` flat out from another process, released on entry.

    For ``seconds`` (or ``count`` messages when it is not 0). The process is
    ended on exit if it still runs.
    """
    ctx = mp.get_context("spawn")  # no fork: the parent has threads
    ready, go, results = ctx.Event(), ctx.Event(), ctx.Queue()
    proc = ctx.Process(
        target=_publisher, args=(url, channel, seconds, count, ready, go, results), daemon=True
    )
    proc.start()
    try:
        if not ready.wait(60):
            raise OperationError("benchmark publisher did not start")
        go.set()
        yield FlatOutPublisher(proc, results, seconds)
    finally:
        if proc.is_alive():
            proc.terminate()
            proc.join(5)


def measure_against_publisher(
    url: str, channel: str, seconds: float, count: int, received: Any, on_done: Any
) -> dict[str, Any]:
    """Publish flat out from another process; report what a subscriber got.

    Starts the publisher, releases it, waits for it and for the subscriber to
    go idle.

    ``received()`` returns the subscriber's count so far; ``on_done()`` is
    called once the subscriber is idle.
    """
    with flat_out_publisher(url, channel, seconds, count) as publisher:
        published = publisher.wait()
        last_count, last_change = received(), time.perf_counter()
        while received() < published["sent"]:
            time.sleep(0.02)
            now_count = received()
            if now_count != last_count:
                last_count, last_change = now_count, time.perf_counter()
            elif time.perf_counter() - last_change > _IDLE_S:
                break
        finished = last_change if received() < published["sent"] else time.perf_counter()
        started = publisher.started
    on_done()
    got = received()
    sent = published["sent"]
    receive_seconds = max(finished - started, published["seconds"])
    return {
        "sent": sent,
        "received": got,
        "lost": sent - got,
        "publish_seconds": published["seconds"],
        "publish_rate": sent / published["seconds"] if published["seconds"] else 0.0,
        "receive_rate": got / receive_seconds if receive_seconds else 0.0,
    }


def _bench_pubsub_listen(url: str, channel: str, seconds: float) -> dict[str, Any]:
    client = redis.Redis.from_url(url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel)
    pubsub.get_message(timeout=1.0)  # consume the subscribe confirmation
    count = [0]
    errors: list[str] = []

    def listen() -> None:
        try:
            for message in pubsub.listen():
                if message["type"] != "message":
                    continue
                if message["data"] == _SENTINEL:
                    return
                count[0] += 1
        except Exception as exc:
            errors.append(type(exc).__name__)

    thread = threading.Thread(target=listen, name="bench-pubsub-listen", daemon=True)
    thread.start()

    def done() -> None:
        client.publish(channel, _SENTINEL)
        thread.join(30)
        pubsub.close()
        client.close()

    result = measure_against_publisher(url, channel, seconds, 0, lambda: count[0], done)
    result["errors"] = errors
    return result


def _bench_recorder(url: str, channel: str, seconds: float, count: int) -> dict[str, Any]:
    client = redis.Redis.from_url(url)
    recorder = EventRecorder(client, channel=channel, maxlen=max(count, 200_000))
    recorder.start()
    try:
        result = measure_against_publisher(
            url, channel, seconds, count, lambda: recorder.received, lambda: None
        )
        stats = recorder.stats() if count else {}
        result["gaps"] = len(recorder.gaps())
        if count:
            result["malformed"] = stats["malformed"]
    finally:
        recorder.stop()
        client.close()
    return result


def run_recorder_benchmark(url: str, seconds: float = 10, burst: int = 100_000) -> dict[str, Any]:
    """Measure event capture against a flat-out publisher.

    Returns a dict with three results, each a dict of sent, received, lost,
    publish_rate and receive_rate (messages per second):

    - ``pubsub_listen``: redis-py ``PubSub.listen()`` for ``seconds``;
    - ``recorder``: ``EventRecorder`` for ``seconds`` (plus its gap count);
    - ``burst``: ``EventRecorder`` receiving exactly ``burst`` messages;

    and ``ratio``: recorder receive_rate / publish_rate (1.0 means it kept up).
    """
    channel = f"botrix:bench:{uuid.uuid4().hex}"
    baseline = _bench_pubsub_listen(url, channel + ":listen", seconds)
    recorder = _bench_recorder(url, channel + ":recorder", seconds, 0)
    burst_result = _bench_recorder(url, channel + ":burst", seconds, burst)
    return {
        "seconds": seconds,
        "pubsub_listen": baseline,
        "recorder": recorder,
        "burst": burst_result,
        "ratio": recorder["receive_rate"] / recorder["publish_rate"]
        if recorder["publish_rate"]
        else 0.0,
    }
