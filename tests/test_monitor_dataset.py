"""The history folder on its own: parsing, partitions, compaction, retention, pruned reads, atomic files."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pandas.testing as pdt
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from botrix_toolkit.core.errors import InvalidInputError, OperationError
from botrix_toolkit.frames.dataset_layout import EVENTS_SCHEMA, TABLES, encode_prefix
from botrix_toolkit.frames.event_frames import parse_event_messages
from botrix_toolkit.frames.events import EventRecorder
from botrix_toolkit.frames.history import RecordedEvents, open_dataset
from botrix_toolkit.frames.history_dataset import read_rollups
from botrix_toolkit.frames.rollups import RollupBuilder
from botrix_toolkit.monitor import maintenance
from botrix_toolkit.monitor.dataset_writer import DatasetWriter
from botrix_toolkit.monitor.event_tables import _Layout, event_tables
from botrix_toolkit.monitor.maintenance import apply_retention, compact, partitions

PREFIX = "{botrix:jobs}/ä b"  # needs escaping in a path
HOUR_NS = 3_600_000_000_000


def message(event: str, job_id: str, status: str | None = "pending", **data: object) -> bytes:
    body: dict[str, object] = {"job_id": job_id}
    if status is not None:
        body["status"] = status
    body.update(data)
    return json.dumps({"event": event, "job_id": job_id, "timestamp": 1764281254, "data": body},
                      separators=(",", ":")).encode()


def job_life(job_id: str, priority: int = 1) -> list[bytes]:
    return [message("status_updated", job_id), message("job_added", job_id, priority=priority),
            message("status_updated", job_id, "running"), message("status_updated", job_id, "completed"),
            message("job_completed", job_id, "completed")]


def events_at(start_ns: int, count: int, step_ns: int = 1_000_000, tag: str = "j") -> pa.Table:
    payloads = [m for i in range(count // 5 + 1) for m in job_life(f"{tag}{i}")][:count]
    table, _ = event_tables([start_ns + i * step_ns for i in range(count)], payloads)
    return table


HOSTILE = [
    b"not json", b"[1,2]", b'{"event":"","job_id":"x"}', b'{"event":"job_added"}', b"\xff\xfe",
    b'{"event":"job_added","job_id":"x","data":[1]}',
    b'{"job_id":"x","event":"job_added","data":{"priority":2,"password":"hunter2"}}',
    b'{"event":"job_added","job_id":"x","timestamp":99999999999,"data":{"job_id":"x","status":"","priority":-3}}',
    b'{"event":"job_added","job_id":"x","timestamp":1.5,"data":{"job_id":"x","status":"pending","priority":true}}',
    b'{"event":"job_failed","job_id":"x\\"y","timestamp":1,"data":{"job_id":"x","status":"failed","error":"a\\nb"}}',
    b'{"event":"job_added", "job_id":"x","timestamp":1,"data":{"job_id":"x","status":"pending","priority":2}}',
    b'{"event":"job_added","job_id":"x","timestamp":1,"data":{"job_id":"x","status":"pending","priority":01}}',
    b'{"event":"job_added","job_id":"x","timestamp":1,"data":{"job_id":"x","status":"p\x01","priority":1}}',
    b'{"event":"job_added","job_id":"big","timestamp":1,"data":{"job_id":"big","status":"pending","priority":123456789012345678}}',
    b'{"event":"job_added","job_id":"neg","timestamp":1,"data":{"job_id":"n","status":"pending","priority":-123456789012345678,"error":"e"}}',
    b'{"event":"job_added","job_id":"huge","timestamp":1,"data":{"job_id":"h","status":"pending","priority":12345678901234567890}}',
    "{\"event\":\"j\u00e9\",\"job_id\":\"\u4e2d\",\"timestamp\":-0,\"data\":{\"job_id\":\"x\",\"status\":\"ok\"}}".encode(),
]


def test_the_fast_route_gives_exactly_the_rows_of_the_toolkits_parser() -> None:
    payloads = [m for i in range(50) for m in job_life(f"id-{i}", i % 3)] + HOSTILE
    payloads = payloads[:7] + HOSTILE + payloads[7:]
    received = [1_764_281_254_000_000_000 + i * 1000 for i in range(len(payloads))]
    events, malformed = event_tables(received, payloads)
    parsed = parse_event_messages(payloads, received)
    expected = parsed.frame()
    got = events.to_pandas()
    assert len(got) == len(expected) and len(malformed) == len(parsed.bad_row)
    for column in ("event", "job_id", "status"):
        assert got[column].fillna("<NA>").tolist() == expected[column].fillna("<NA>").tolist()
    assert events.column("priority").to_pylist() == parsed.priority  # exact, beyond float precision
    assert [json.loads(d) for d in got["data"]] == expected["data"].tolist()
    pdt.assert_series_equal(got["timestamp"].astype("datetime64[ns, UTC]"), expected["timestamp"],
                            check_names=False)
    pdt.assert_series_equal(got["received_at"].astype("datetime64[ns, UTC]"), expected["received_at"],
                            check_names=False)
    assert malformed.column("reason").to_pylist() == parsed.bad_reason
    assert "hunter2" not in events.to_string() + str(events.column("data").to_pylist())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.text('"a', max_size=12), st.text('"', min_size=250, max_size=300),
                          st.text('"ab', min_size=256, max_size=900)), max_size=12),
       st.integers(min_value=0, max_value=3))
def test_the_fast_routes_quote_positions_are_right_for_messages_of_any_length(texts: list[str], skip: int) -> None:
    # Quotes are counted a byte sum at a time, which wraps past 255: longer messages take another way.
    array = pa.array(texts, type=pa.large_string())[min(skip, len(texts)):]  # a slice has an offset
    layout = _Layout(array)
    assert layout.count.tolist() == [t.count('"') for t in array.to_pylist()]
    quotes = [[m.start() for m in re.finditer('"', t)] for t in array.to_pylist()]  # ASCII: bytes are characters
    for k in range(3):
        got = [int(q - start) if n > k else None
               for q, start, n in zip(layout.quote(k), layout.offsets[:-1], layout.count, strict=True)]
        assert got == [positions[k] if len(positions) > k else None for positions in quotes]


def test_rows_are_partitioned_by_queue_date_and_hour_with_the_prefix_escaped(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path)
    start = pd.Timestamp("2026-11-28T23:59:59.9", tz="UTC").value
    files = writer.append("events", PREFIX, events_at(start, 300))  # crosses midnight
    assert [f.parent.relative_to(tmp_path).as_posix() for f in files] == [
        f"events/queue={encode_prefix(PREFIX)}/date=2026-11-28/hour=23",
        f"events/queue={encode_prefix(PREFIX)}/date=2026-11-29/hour=00",
    ]
    assert "/" not in encode_prefix(PREFIX) and ":" not in encode_prefix(PREFIX)
    table = open_dataset(tmp_path).to_table()
    assert table.num_rows == 300 and set(table.column("queue").to_pylist()) == {PREFIX}
    # Plain pyarrow, no toolkit: the folder is an ordinary Hive-partitioned dataset.
    plain = pq.read_table(tmp_path / "events", partitioning="hive")
    assert plain.num_rows == 300
    assert not list(tmp_path.rglob("*.tmp"))


def test_load_reads_only_the_partitions_of_its_range(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path)
    base = pd.Timestamp("2026-11-29T10:00", tz="UTC").value
    for hour in range(3):
        writer.append("events", PREFIX, events_at(base + hour * HOUR_NS, 50, tag=f"h{hour}-"))
    # Ruin hour 10: a range that needs it would fail to read it.
    broken = next((tmp_path / "events").rglob("hour=10/*.parquet"))
    broken.write_bytes(b"not parquet")
    recording = EventRecorder.load(tmp_path, start="2026-11-29T11:00", end="2026-11-29T12:00", prefix=PREFIX)
    assert isinstance(recording, RecordedEvents)
    frame = recording.frame()
    assert len(frame) == 50 and frame["job_id"].str.startswith("h1-").all()
    assert frame["received_at"].is_monotonic_increasing
    assert recording.channel == f"{PREFIX}:updates"
    with pytest.raises(Exception):  # noqa: B017 - any error: the ruined file is read
        EventRecorder.load(tmp_path, prefix=PREFIX)


def test_a_history_with_several_queues_needs_a_prefix(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path)
    now = pd.Timestamp("2026-11-29T10:00", tz="UTC").value
    writer.append("events", "a", events_at(now, 5))
    writer.append("events", "b", events_at(now, 10))
    with pytest.raises(InvalidInputError, match="2 queues"):
        EventRecorder.load(tmp_path)
    assert len(EventRecorder.load(tmp_path, prefix="b").frame()) == 10


def write_small_files(tmp_path: Path, start: datetime, files: int, rows: int) -> DatasetWriter:
    writer = DatasetWriter(tmp_path)
    for k in range(files):
        writer.append("events", PREFIX, events_at(int(start.timestamp() * 1e9) + k * 10_000_000_000, rows,
                                                  tag=f"f{k}-"))
    return writer


def test_compaction_keeps_every_row_in_order_in_one_file_per_hour(tmp_path: Path) -> None:
    start = datetime(2026, 11, 29, 9, tzinfo=UTC)
    write_small_files(tmp_path, start, files=40, rows=25)
    before = EventRecorder.load(tmp_path, prefix=PREFIX).frame()
    done = compact(tmp_path, start + timedelta(hours=2), timedelta(minutes=2), threading.Lock())
    assert [(files, rows) for _, files, rows in done] == [(40, 1000)]
    [partition] = partitions(tmp_path, "events")
    assert len(list(partition.path.glob("*.parquet"))) == 1
    after = EventRecorder.load(tmp_path, prefix=PREFIX).frame()
    pdt.assert_frame_equal(after, before)
    # An hour still open is left alone.
    assert compact(tmp_path, start + timedelta(minutes=30), timedelta(minutes=2), threading.Lock()) == []


def test_the_open_days_rollups_are_merged_hour_by_hour_every_row_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A rollup file a minute since midnight, as the monitor leaves them, up to 02:30.
    writer = DatasetWriter(tmp_path)
    midnight = pd.Timestamp("2026-11-29T00:00", tz="UTC")
    for minute in range(150):
        at = (midnight + pd.Timedelta(minutes=minute)).value // 1000
        writer.append("rollup_counts", PREFIX, pa.table({
            "minute": [at, at], "event": ["job_added", "job_completed"], "priority": [1, 1], "count": [minute, 2],
        }).cast(TABLES["rollup_counts"][0]))
    before = read_rollups(tmp_path, "counts").sort_values(["minute", "event"], ignore_index=True)
    [today] = partitions(tmp_path, "rollup_counts")
    seen: list[int] = []
    stop = threading.Event()

    def read() -> None:  # the dashboard reading today's rollups while they are merged
        while not stop.is_set():
            try:
                seen.append(len(read_rollups(tmp_path, "counts")))
            except FileNotFoundError:
                pass  # listed then merged away: read again, as any scanner of a live folder

    listed_at_swap: list[int] = []
    exchange = maintenance._exchange

    def exchange_seen_by_a_reader(staging: Path, live: Path) -> bool:
        listed_at_swap.append(len(list(live.glob("*.parquet"))))  # the last listing before the swap
        return exchange(staging, live)

    monkeypatch.setattr(maintenance, "_exchange", exchange_seen_by_a_reader)
    reader = threading.Thread(target=read)
    reader.start()
    try:
        at_0230 = compact(tmp_path, datetime(2026, 11, 29, 2, 30, tzinfo=UTC), timedelta(minutes=2),
                          threading.Lock())
    finally:
        stop.set()
        reader.join()
    assert seen and set(seen) == {300}  # never a row missing nor twice
    assert listed_at_swap == [150]  # the files not merged stay listed until the folders swap
    # Hours 00 and 01 are one file; the 30 minutes of the open hour stay as they were.
    assert [(files, rows) for _, files, rows in at_0230] == [(120, 240)]
    assert len(list(today.path.glob("*.parquet"))) == 31
    at_0301 = compact(tmp_path, datetime(2026, 11, 29, 3, 1, tzinfo=UTC), timedelta(minutes=2), threading.Lock())
    assert at_0301 == []  # 02:00-03:00 has not settled yet
    at_0303 = compact(tmp_path, datetime(2026, 11, 29, 3, 3, tzinfo=UTC), timedelta(minutes=2), threading.Lock())
    assert [(files, rows) for _, files, rows in at_0303] == [(31, 300)]
    assert len(list(today.path.glob("*.parquet"))) == 1
    after = read_rollups(tmp_path, "counts").sort_values(["minute", "event"], ignore_index=True)
    pdt.assert_frame_equal(after, before)


def test_retention_deletes_partitions_older_than_retain_and_keeps_the_rest(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path)
    now = datetime(2026, 11, 29, 12, tzinfo=UTC)
    for days_ago in (9, 8, 1, 0):
        moment = int((now - timedelta(days=days_ago, minutes=30)).timestamp() * 1e9)
        writer.append("events", PREFIX, events_at(moment, 10, tag=f"d{days_ago}-"))
        gaps = pa.table({"start": [moment // 1000], "end": [moment // 1000 + 1], "duration_s": [1e-6],
                         "reason": ["test"]}).cast(TABLES["gaps"][0])
        writer.append("gaps", PREFIX, gaps)
    deleted = apply_retention(tmp_path, now, timedelta(days=7), threading.Lock())
    assert len(deleted) == 4  # two days of events and of gaps
    left = EventRecorder.load(tmp_path, prefix=PREFIX)
    assert sorted({j.split("-")[0] for j in left.frame()["job_id"]}) == ["d0", "d1"]
    assert len(left.gaps()) == 2
    assert not list((tmp_path / "events").rglob("date=2026-11-2[01]"))


def test_readers_never_see_a_half_written_file_nor_a_row_twice(tmp_path: Path) -> None:
    start = datetime(2026, 11, 29, 9, tzinfo=UTC)
    writer = write_small_files(tmp_path, start, files=30, rows=20)
    lock = threading.Lock()
    seen: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                seen.append(open_dataset(tmp_path).count_rows())
            except FileNotFoundError:
                pass  # listed then compacted away: the reader retries, as any scanner of a live folder
            except BaseException as exc:
                errors.append(exc)
                return

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for k in range(30):  # more files arrive in a later hour while the old one is compacted
            with lock:
                writer.append("events", PREFIX, events_at(int((start + timedelta(hours=3)).timestamp() * 1e9)
                                                          + k * 1000, 20, tag=f"late{k}-"))
            if k == 10:
                compact(tmp_path, start + timedelta(hours=2), timedelta(minutes=2), lock)
    finally:
        stop.set()
        reader.join()
    assert not errors, errors
    assert seen and all(600 <= n <= 1200 for n in seen)
    assert seen == sorted(seen)  # rows only ever appear, never vanish nor show twice
    assert open_dataset(tmp_path).count_rows() == 1200


def test_rollups_count_events_by_priority_and_measure_wait_and_run() -> None:
    minute = pd.Timestamp("2026-11-29T10:00", tz="UTC").value
    t = [minute + s * 1_000_000_000 for s in (0, 0, 2, 5, 5, 61, 61, 62, 70, 70)]
    payloads = job_life("a", 2) + job_life("b", 0)
    builder = RollupBuilder()
    events, _ = event_tables(t[:5], payloads[:5])
    builder.add(events)
    events, _ = event_tables(t[5:], payloads[5:])
    builder.add(events)
    counts, latency = builder.close((minute + 60_000_000_000) // 1000)  # only the first minute, in µs
    assert counts.num_rows == 4
    rows = {(r["event"], r["priority"]): r["count"] for r in counts.to_pylist()}
    assert rows == {("status_updated", None): 1, ("job_added", 2): 1, ("status_updated", 2): 2,
                    ("job_completed", 2): 1}
    [first] = latency.to_pylist()
    assert (first["priority"], first["wait_count"], first["wait_p50_s"], first["run_count"], first["run_max_s"]) \
        == (2, 1, 2.0, 1, 3.0)
    counts, latency = builder.close(None)
    [second] = latency.to_pylist()
    assert (second["priority"], second["wait_p50_s"], second["run_p50_s"]) == (0, 1.0, 8.0)
    assert builder.open_jobs == 0


def test_a_job_whose_add_was_not_seen_keeps_a_null_priority_across_batches() -> None:
    minute = pd.Timestamp("2026-11-29T10:00", tz="UTC").value
    builder = RollupBuilder()
    events, _ = event_tables([minute], [message("status_updated", "x", "running")])
    builder.add(events)
    assert builder.open_jobs == 1
    events, _ = event_tables([minute + 1_000_000_000], [message("job_completed", "x", "completed")])
    builder.add(events)
    counts, latency = builder.close(None)
    assert {(r["event"], r["priority"]) for r in counts.to_pylist()} == {("status_updated", None),
                                                                         ("job_completed", None)}
    assert latency.column("priority").to_pylist() == [None] and latency.column("run_max_s").to_pylist() == [1.0]
    assert builder.open_jobs == 0


def test_parsing_an_arrow_array_in_chunks_gives_the_rows_of_a_list() -> None:
    # Hostile messages between the plain ones, and chunks of uneven sizes:
    # the chunks are parsed side by side, and the rows must still keep receive order.
    lives = [job_life(f"c-{i}", i % 3) for i in range(30)]
    payloads = [m for i, life in enumerate(lives) for m in life + HOSTILE[i:i + 1]] + HOSTILE[30:]
    received = [1_764_281_254_000_000_000 + i * 1000 for i in range(len(payloads))]
    cuts = [0, 1, 9, 40, 41, 77, 120, len(payloads)]
    chunked = pa.chunked_array([pa.array(payloads[a:b], type=pa.large_binary()) for a, b in zip(cuts, cuts[1:])])
    events, malformed = event_tables(pd.Series(received).to_numpy(), chunked)
    expected, expected_malformed = event_tables(received, payloads)
    assert events.combine_chunks().equals(expected.combine_chunks())
    assert malformed.combine_chunks().equals(expected_malformed.combine_chunks())


def test_a_forked_child_parses_chunks_on_threads_of_its_own() -> None:
    # The parent's parsing threads do not exist in a forked child: work handed to them would wait forever.
    payloads = [m for i in range(20) for m in job_life(f"f-{i}", i % 3)]
    chunked = pa.chunked_array([pa.array(payloads[:50], type=pa.large_binary()),
                                pa.array(payloads[50:], type=pa.large_binary())])
    received = [1_764_281_254_000_000_000 + i for i in range(len(payloads))]
    assert event_tables(received, chunked)[0].num_rows == len(payloads)  # the parent's pool exists now
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child, which reports by its exit code
        os._exit(0 if event_tables(received, chunked)[0].num_rows == len(payloads) else 1)
    deadline = time.monotonic() + 60
    while (done := os.waitpid(child, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if done[0] == 0:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
    assert done[0] == child and os.waitstatus_to_exitcode(done[1]) == 0, "the child's parse hung or failed"


def test_a_prepared_rollup_batch_is_taken_in_only_on_the_state_it_was_worked_out_from() -> None:
    start = pd.Timestamp("2026-11-29T10:00", tz="UTC").value
    first, second = events_at(start, 50), events_at(start + 60_000_000_000, 50)
    builder, reference = RollupBuilder(), RollupBuilder()
    reference.add(first)
    reference.add(second)
    thrown_away = builder.prepare(first)  # as for a batch whose write failed: never committed
    builder.commit(builder.prepare(first))
    with pytest.raises(OperationError, match="stale"):  # a RuntimeError, as it was
        builder.commit(thrown_away)
    builder.commit(builder.prepare(second))
    for ours, theirs in zip(builder.close(None), reference.close(None), strict=True):
        assert ours.equals(theirs)


def test_rollups_read_back_per_minute(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path)
    builder = RollupBuilder()
    builder.add(events_at(pd.Timestamp("2026-11-29T10:00", tz="UTC").value, 500, step_ns=300_000_000))
    counts, latency = builder.close(None)
    writer.append("rollup_counts", PREFIX, counts)
    writer.append("rollup_latency", PREFIX, latency)
    frame = read_rollups(tmp_path, "counts", start="2026-11-29T10:01", end="2026-11-29T10:02")
    assert set(frame["minute"]) == {pd.Timestamp("2026-11-29T10:01", tz="UTC")}
    assert frame["count"].sum() == 200  # 60 s / 0.3 s
    assert len(read_rollups(tmp_path, "latency")) == 3
    assert list(read_rollups(tmp_path, "latency").columns) == TABLES["rollup_latency"][0].names


def test_the_events_schema_is_what_the_readme_documents() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    for field in EVENTS_SCHEMA:
        assert f"`{field.name}`" in readme.split("## botrix monitor", 1)[1]


def test_a_history_folder_loads_as_the_saved_file_it_was_made_from(tmp_path: Path) -> None:
    from botrix_toolkit.monitor.backfill import write_recording

    saved = EventRecorder.load(Path(__file__).resolve().parent.parent / "data" / "samples" / "events.parquet")
    assert write_recording(saved, tmp_path, "botrix:jobs") == len(saved.frame())
    loaded = EventRecorder.load(tmp_path)
    expected = saved.frame()
    expected["received_at"] = expected["received_at"].dt.floor("us")  # the folder keeps microseconds
    pdt.assert_frame_equal(loaded.frame(), expected)
    pdt.assert_frame_equal(loaded.malformed(), saved.malformed())
    assert loaded.channel == "botrix:jobs:updates"


def test_a_priority_beyond_float_precision_loads_exactly(tmp_path: Path) -> None:
    payload = message("job_added", "big", priority=123456789012345678)
    events, _ = event_tables([pd.Timestamp("2026-11-29T10:00", tz="UTC").value], [payload])
    DatasetWriter(tmp_path).append("events", PREFIX, events)
    assert EventRecorder.load(tmp_path).frame()["priority"].tolist() == [123456789012345678]


_CLEAN = st.text(alphabet=st.sampled_from(list("ab-é中 :,{}0")), max_size=4)
_FIELD = st.one_of(_CLEAN, _CLEAN, _CLEAN, st.text(alphabet=st.sampled_from(list('a"\\\x01')), max_size=3))
_NUMBER = st.one_of(st.integers(min_value=-999, max_value=999).map(str),
                    st.sampled_from(["9999999999", "10000000000", "-9999999999", "999999999999999999",
                                     "1000000000000000000", "-999999999999999999", "-0", "00", "01", "-",
                                     "", "1.5", "+1", "1e3"]))


@st.composite
def _near_plain_message(draw: st.DrawFn) -> str:
    text = (f'{{"event":"{draw(_FIELD)}","job_id":"{draw(_FIELD)}","timestamp":{draw(_NUMBER)},'
            f'"data":{{"job_id":"{draw(_FIELD)}","status":"{draw(_FIELD)}"')
    if draw(st.booleans()):
        text += f',"priority":{draw(_NUMBER)}'
    if draw(st.booleans()):
        text += f',"error":"{draw(_FIELD)}"'
    text += "}}"
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):  # sometimes a stray edit anywhere
        at = draw(st.integers(min_value=0, max_value=len(text)))
        text = text[:at] + draw(st.sampled_from(['"', "", " ", "}", ",", "x"])) + text[at + 1:]
    return text


_HEAD = '{"event":"a","job_id":"b","timestamp":'
_NEAR_MISSES = [  # each beside the line the expression draws
    _HEAD + '9999999999,"data":{"job_id":"","status":""}}', _HEAD + '10000000000,"data":{"job_id":"","status":""}}',
    _HEAD + '1,"data":{"job_id":"","status":"","priority":999999999999999999}}',
    _HEAD + '1,"data":{"job_id":"","status":"","priority":1000000000000000000}}',
    _HEAD + '01,"data":{"job_id":"","status":""}}', _HEAD + '-,"data":{"job_id":"","status":""}}',
    _HEAD + '1,"data":{"job_id":"","status":"","priority":-0,"error":""}}',
    _HEAD + '1,"data":{"job_id":"","status":"","error":"","priority":1}}',
    _HEAD + '1,"data":{"job_id":"","status":""}}}', _HEAD + '1,"data":{"job_id":"","status":""}',
    _HEAD + '1,"data":{"job_id":"","status":"","error":"x"}}',
    _HEAD + '1,"data":{"job_id":"","status":"","priority":}}',
    '{"event":"","job_id":"b","timestamp":1,"data":{"job_id":"","status":""}}',
    '{"event":"a","job_id":"","timestamp":1,"data":{"job_id":"","status":""}}',
]


@settings(max_examples=100, deadline=None)
@given(st.lists(_near_plain_message(), max_size=30).map(lambda texts: texts + _NEAR_MISSES))
def test_near_misses_of_the_fast_route_give_the_rows_of_the_toolkits_parser(texts: list[str]) -> None:
    payloads = [t.encode() for t in texts]
    received = list(range(1, len(texts) + 1))
    events, malformed = event_tables(received, payloads)
    parsed = parse_event_messages(payloads, received)
    assert events.column("job_id").to_pylist() == parsed.job_id
    assert events.column("event").to_pylist() == parsed.event
    assert events.column("priority").to_pylist() == parsed.priority
    assert malformed.num_rows == len(parsed.bad_row)
