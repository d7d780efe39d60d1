"""EventRecorder against a real server: capture, losslessness, reconnects, malformed input, files."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pandas as pd
import pandas.testing as pdt
import pytest
import redis

from botrix_toolkit.bench.events import event_messages, measure_against_publisher
from botrix_toolkit.core.errors import ServerConnectionError
from botrix_toolkit.frames.event_frames import EVENT_COLUMNS, GAP_COLUMNS, empty_frame
from botrix_toolkit.frames.events import EventRecorder, RecordedEvents
from tests import starved_recorder
from tests.waiting import wait_for


def event(job_id: str, name: str = "job_added", **data: object) -> bytes:
    return json.dumps({"event": name, "job_id": job_id, "timestamp": 1764281254,
                       "data": {"job_id": job_id, **data}}).encode()


@pytest.fixture
def channel() -> str:
    return f"test:{uuid4().hex[:12]}:updates"


@pytest.fixture
def recorder(redis_client: redis.Redis, channel: str) -> Iterator[EventRecorder]:
    rec = EventRecorder(redis_client, channel=channel)
    rec.start()
    try:
        yield rec
    finally:
        rec.stop()


def publish_pipelined(client: redis.Redis, channel: str, payloads: list[bytes], batch: int = 1000) -> None:
    pipe = client.pipeline(transaction=False)
    for start in range(0, len(payloads), batch):
        for payload in payloads[start : start + batch]:
            pipe.publish(channel, payload)
        pipe.execute()


def test_burst_of_100k_is_fully_counted(redis_client: redis.Redis, channel: str,
                                        recorder: EventRecorder) -> None:
    payloads = event_messages(100_000)
    publish_pipelined(redis_client, channel, payloads)
    wait_for(lambda: recorder.received >= 100_000, "100,000 messages")
    stats = recorder.stats()
    assert stats["received"] == 100_000
    assert stats["dropped_oldest"] == 0
    assert stats["malformed"] == 0
    assert stats["gaps"] == 0
    frame = recorder.frame()
    assert len(frame) == 100_000
    # Receive order is publish order.
    assert frame["job_id"].iloc[0] == json.loads(payloads[0])["job_id"]
    assert frame["job_id"].iloc[-1] == json.loads(payloads[-1])["job_id"]


@pytest.mark.slow
def test_keeps_up_with_a_flat_out_pipelined_publisher(redis_url: str, redis_client: redis.Redis,
                                                     channel: str) -> None:
    with EventRecorder(redis_client, channel=channel, maxlen=50_000) as rec:
        result = measure_against_publisher(redis_url, channel, 3.0, 0, lambda: rec.received,
                                           lambda: None)
        stats = rec.stats()
        gaps = rec.gaps()
    assert result["sent"] > 0
    assert stats["received"] == result["sent"], result
    assert stats["gaps"] == 0 and gaps.empty
    # Memory stays bounded: only the newest maxlen messages are kept.
    assert stats["dropped_oldest"] == result["sent"] - 50_000


def has_one_closed_gap(rec: EventRecorder) -> bool:
    gaps = rec.gaps()  # one snapshot: the gap may open between two calls
    return len(gaps) == 1 and bool(gaps["end"].notna().all())


def _kill_recorder_connection(client: redis.Redis, rec: EventRecorder) -> None:
    # Kill only this recorder's connection (by its local address), not other tests'.
    assert rec._conn is not None and rec._conn._sock is not None
    host, port = rec._conn._sock.getsockname()[:2]
    assert client.client_kill_filter(_type="pubsub", addr=f"{host}:{port}") == 1


def test_reconnects_after_client_kill_and_reports_the_gap(redis_client: redis.Redis, channel: str,
                                                         recorder: EventRecorder) -> None:
    redis_client.publish(channel, event("before"))
    wait_for(lambda: recorder.received == 1, "the first message")
    _kill_recorder_connection(redis_client, recorder)
    wait_for(lambda: has_one_closed_gap(recorder), "a closed gap")
    redis_client.publish(channel, event("after"))
    wait_for(lambda: recorder.received == 2, "the message after the reconnect")
    frame = recorder.frame()
    assert frame["job_id"].tolist() == ["before", "after"]
    gaps = recorder.gaps()
    assert list(gaps.columns) == list(GAP_COLUMNS)
    assert gaps["reason"].iloc[0].startswith("ConnectionError")
    assert gaps["end"].iloc[0] >= gaps["start"].iloc[0]
    assert gaps["duration_s"].iloc[0] >= 0
    assert len(frame.attrs["gaps"]) == 1
    assert frame.attrs["gaps"][0]["end"] == gaps["end"].iloc[0]
    assert recorder.stats()["gaps"] == 1
    assert recorder.running


def test_malformed_messages_are_counted_and_recording_goes_on(redis_client: redis.Redis,
                                                            channel: str,
                                                            recorder: EventRecorder) -> None:
    garbage = [b"\xff\xfe", b"not json", b"[1,2]", b'{"event":1}']
    for payload in garbage:
        redis_client.publish(channel, payload)
    redis_client.publish(channel, event("good"))
    wait_for(lambda: recorder.received == 5, "five messages")
    stats = recorder.stats()
    assert stats["malformed"] == 4
    assert stats["received"] == 5
    bad = recorder.malformed()
    assert bad["reason"].tolist() == ["not UTF-8", "not JSON", "not a JSON object",
                                      "missing or non-string event"]
    assert bad["raw"].tolist()[1:] == ["not json", "[1,2]", '{"event":1}']
    assert recorder.frame()["job_id"].tolist() == ["good"]
    assert recorder.running


def test_maxlen_drops_the_oldest_and_counts_them(redis_client: redis.Redis, channel: str) -> None:
    with EventRecorder(redis_client, channel=channel, maxlen=10) as rec:
        for i in range(25):
            redis_client.publish(channel, event(f"j{i}"))
        wait_for(lambda: rec.received >= 25, "25 messages")
        stats = rec.stats()
        frame = rec.frame()
    assert stats["received"] == 25
    assert stats["dropped_oldest"] == 15
    assert frame["job_id"].tolist() == [f"j{i}" for i in range(15, 25)]


def test_maxlen_is_exact_when_many_messages_arrive_in_one_chunk(redis_client: redis.Redis,
                                                                channel: str) -> None:
    # Pipelined, the messages reach the recorder a few socket reads at a time:
    # dropping must still keep exactly the newest maxlen and count the rest.
    with EventRecorder(redis_client, channel=channel, maxlen=100) as rec:
        for round_number in range(5):
            pipe = redis_client.pipeline(transaction=False)
            for i in range(500):
                pipe.publish(channel, event(f"r{round_number}-{i:03d}"))
            pipe.execute()
        wait_for(lambda: rec.received >= 2500, "2,500 messages")
        stats = rec.stats()
        frame = rec.frame()
    assert stats["received"] == 2500
    assert stats["dropped_oldest"] == 2400
    assert frame["job_id"].tolist() == [f"r4-{i:03d}" for i in range(400, 500)]


def test_frame_columns_and_dtypes_are_exact(redis_client: redis.Redis, channel: str,
                                            recorder: EventRecorder) -> None:
    assert recorder.frame().dtypes.to_dict() == empty_frame(EVENT_COLUMNS).dtypes.to_dict()
    redis_client.publish(channel, event("a", status="pending", priority=1))
    redis_client.publish(channel, event("a", name="status_updated", status="running"))
    wait_for(lambda: recorder.received == 2, "two messages")
    frame = recorder.frame()
    expected = pd.DataFrame(
        {
            "received_at": frame["received_at"],  # local time: checked below
            "timestamp": pd.to_datetime([1764281254] * 2, unit="s", utc=True).as_unit("ns"),
            "event": pd.array(["job_added", "status_updated"], dtype="string"),
            "job_id": pd.array(["a", "a"], dtype="string"),
            "status": pd.array(["pending", "running"], dtype="string"),
            "priority": pd.array([1, None], dtype="Int64"),
            "data": pd.Series([{"job_id": "a", "status": "pending", "priority": 1},
                               {"job_id": "a", "status": "running"}], dtype=object),
        }
    )
    pdt.assert_frame_equal(frame, expected)
    assert list(frame.columns) == list(EVENT_COLUMNS)
    assert str(frame["received_at"].dtype) == "datetime64[ns, UTC]"
    now = pd.Timestamp.now(tz="UTC")
    assert (frame["received_at"] <= now).all()
    assert (frame["received_at"] > now - pd.Timedelta(minutes=5)).all()
    assert frame["received_at"].is_monotonic_increasing


def test_password_never_reaches_a_frame(redis_client: redis.Redis, channel: str,
                                        recorder: EventRecorder) -> None:
    redis_client.publish(channel, event("a", password="hunter2", job={"password": "hunter3"}))
    redis_client.publish(channel, b'[{"password": "hunter4"}]')
    wait_for(lambda: recorder.received == 2, "two messages")
    frame, bad = recorder.frame(), recorder.malformed()
    assert frame["data"].iloc[0]["password"] == "***"
    assert frame["data"].iloc[0]["job"] == {"password": "***"}
    shown = repr(frame["data"].tolist()) + repr(bad["raw"].tolist()) + recorder._repr_html_()
    for secret in ("hunter2", "hunter3", "hunter4"):
        assert secret not in shown


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_save_and_load_round_trip(redis_client: redis.Redis, channel: str, recorder: EventRecorder,
                                  tmp_path: Path, suffix: str) -> None:
    redis_client.publish(channel, event("a", status="pending", priority=2, extra={"n": [1, "x"]}))
    redis_client.publish(channel, event("NA", name="status_updated", status="running"))
    redis_client.publish(channel, b"not json, with a comma")
    redis_client.publish(channel, json.dumps({"event": "job_orphan_removed", "job_id": "null"}))
    wait_for(lambda: recorder.received == 4, "four messages")
    _kill_recorder_connection(redis_client, recorder)
    wait_for(lambda: has_one_closed_gap(recorder), "a closed gap")
    path = recorder.save(tmp_path / f"events{suffix}")
    loaded = EventRecorder.load(path)
    assert isinstance(loaded, RecordedEvents)
    pdt.assert_frame_equal(loaded.frame(), recorder.frame())
    pdt.assert_frame_equal(loaded.gaps(), recorder.gaps())
    pdt.assert_frame_equal(loaded.malformed(), recorder.malformed())
    assert loaded.frame().attrs["gaps"] == recorder.frame().attrs["gaps"]
    assert loaded.stats()["received"] == 4 and loaded.stats()["malformed"] == 1
    assert loaded.channel == channel
    assert "<code>" in loaded._repr_html_()


def test_save_rejects_an_unknown_suffix(recorder: EventRecorder, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="events.xlsx"):
        recorder.save(tmp_path / "events.xlsx")


def test_stop_ends_the_thread_and_leaks_none(redis_client: redis.Redis, channel: str) -> None:
    before = {t.ident for t in threading.enumerate()}
    rec = EventRecorder(redis_client, channel=channel).start()
    assert rec.running and rec.stats()["connected"]
    thread = rec._thread
    rec.stop(timeout=5)
    assert thread is not None and not thread.is_alive()
    assert not rec.running
    assert not rec.stats()["connected"]
    assert {t.ident for t in threading.enumerate()} <= before
    # The subscription is gone from the server too.
    wait_for(lambda: redis_client.pubsub_numsub(channel)[0][1] == 0, "the unsubscribe")


def test_stop_is_prompt_while_idle(redis_client: redis.Redis, channel: str) -> None:
    # Not a timing assertion on speed: join must succeed within its own timeout.
    rec = EventRecorder(redis_client, channel=channel).start()
    rec.stop(timeout=10)
    assert rec._thread is None


def test_start_fails_clearly_without_a_server() -> None:
    from botrix_toolkit.server.ports import free_port

    client = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)
    rec = EventRecorder(client, channel="x")
    with pytest.raises(ServerConnectionError, match="'x'"):
        rec.start()
    assert not rec.running


def test_queue_service_default_channel_gets_the_queue_events(queue) -> None:
    from botrix_toolkit.core.models import Job

    with EventRecorder(queue) as rec:
        assert rec.channel == queue.keys.updates
        job_id = queue.add_job(Job(id="job-1", count=1, password="hunter2"))
        wait_for(lambda: rec.received >= 2, "the add events")
        frame = rec.frame()
    assert frame["job_id"].tolist() == [job_id, job_id]
    assert frame["event"].tolist() == ["status_updated", "job_added"]
    assert "hunter2" not in repr(frame["data"].tolist())


def test_repr_html_escapes_the_channel(redis_client: redis.Redis) -> None:
    channel = f"test:{uuid4().hex[:8]}:<b>&"
    with EventRecorder(redis_client, channel=channel) as rec:
        html = rec._repr_html_()
    assert "&lt;b&gt;&amp;" in html and "<b>&" not in html
    assert "recording" in html


def test_stop_records_every_message_published_before_it(redis_url: str, redis_client: redis.Redis,
                                                         channel: str) -> None:
    count = 60_000  # a few MB: still in the socket and the server's buffer when stop() is called
    rec = EventRecorder(redis_client, channel=channel).start()
    starved_recorder.stop_while_starved(rec, redis_url, channel, count)
    assert rec.received == count
    assert rec.drain().payloads.to_pylist() == starved_recorder.payloads(count)
    assert rec.gaps().empty


def test_drain_hands_over_every_message_once_in_order(redis_client: redis.Redis, channel: str,
                                                      recorder: EventRecorder) -> None:
    first = [event(f"a{i}") for i in range(1000)]
    publish_pipelined(redis_client, channel, first)
    wait_for(lambda: recorder.received >= 1000, "1,000 messages")
    drained = recorder.drain()
    assert drained.payloads.to_pylist() == first and drained.dropped == 0
    assert drained.received_ns.tolist() == sorted(drained.received_ns.tolist())
    assert drained.drained_at_ns >= drained.received_ns[-1]
    second = [event(f"b{i}") for i in range(500)]
    publish_pipelined(redis_client, channel, second)
    wait_for(lambda: recorder.received >= 1500, "1,500 messages")
    assert recorder.drain().payloads.to_pylist() == second
    assert recorder.drain().payloads.to_pylist() == []
    assert len(recorder.frame()) == 0  # drained messages left the buffer
    assert recorder.stats()["dropped_oldest"] == 0  # ... and are not counted as lost


def test_drain_hands_each_piece_as_it_is_cut_and_the_pieces_are_the_drain(redis_client: redis.Redis, channel: str,
                                                                          recorder: EventRecorder) -> None:
    earlier = [event(f"e{i}") for i in range(100)]
    publish_pipelined(redis_client, channel, earlier)
    wait_for(lambda: recorder.received >= 100, "100 messages")
    assert len(recorder.frame()) == 100  # split and kept by the recorder: they must come first
    later = [event(f"l{i}-" + "x" * 400) for i in range(30_000)]  # about 14 MB: several runs
    publish_pipelined(redis_client, channel, later)
    wait_for(lambda: recorder.received >= 30_100, "30,100 messages")
    pieces: list[list[bytes]] = []
    drained = recorder.drain(on_split=lambda piece: pieces.append(piece.payloads.to_pylist()))
    assert len(pieces) >= 3 and pieces[0] == earlier
    assert [p for piece in pieces for p in piece] == drained.payloads.to_pylist() == earlier + later
    assert drained.dropped == 0 and recorder.drain().payloads.to_pylist() == []


def test_drain_reports_what_a_full_buffer_dropped(redis_client: redis.Redis, channel: str) -> None:
    with EventRecorder(redis_client, channel=channel, maxlen=100) as rec:
        publish_pipelined(redis_client, channel, [event(f"j{i}") for i in range(1000)])
        wait_for(lambda: rec.received >= 1000, "1,000 messages")
        drained = rec.drain()
    assert 0 < len(drained.payloads) <= 1000
    assert len(drained.payloads) + drained.dropped == 1000
    assert drained.payloads[-1].as_py() == event("j999")
