"""The vectorised reply splitter gives exactly the messages hiredis reads, however the stream is cut."""

from __future__ import annotations

import hiredis
from hypothesis import given, settings
from hypothesis import strategies as st

from botrix_toolkit.frames.reply_stream import RUN_BYTES, ReplySplitter, SplitMessages, joined_messages

CHANNEL = b"botrix:jobs:updates"


def message(payload: bytes, channel: bytes = CHANNEL) -> bytes:
    return b"*3\r\n$7\r\nmessage\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(channel), channel, len(payload), payload)


def split_all(splitter: ReplySplitter, chunks: list[tuple[int, int, bytes, bool]]) -> SplitMessages:
    """Every message ``chunks`` complete, the runs joined as the recorder joins them."""
    return joined_messages(list(splitter.split_runs(chunks)))


def hiredis_messages(stream: bytes) -> list[bytes]:
    reader = hiredis.Reader()
    reader.feed(stream)
    out = []
    while (reply := reader.gets()) is not False:
        if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message":
            out.append(reply[2])
    return out


# Payloads that look like the stream itself: a marker, a whole reply, CRLF, stars, nothing.
_TRICKY = [b"", b"*", b"\r\n", b"*3\r\n$7\r\nmessage\r\n", message(b"inner"), b'{"event":"x"}']
_REPLY = st.one_of(
    # Lengths of one, two and three digits side by side (9 -> 10, 99 -> 100 bytes).
    st.builds(message, st.one_of(st.binary(max_size=40), st.binary(min_size=98, max_size=101),
                                 st.sampled_from(_TRICKY))),
    st.just(b"*3\r\n$9\r\nsubscribe\r\n$3\r\nabc\r\n:1\r\n"),  # not a message: skipped
    st.just(message(b"other channel's", b"elsewhere")),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_REPLY, max_size=40), st.lists(st.integers(min_value=0), max_size=8), st.data())
def test_the_split_equals_hiredis_however_the_chunks_fall(replies: list[bytes], cuts: list[int],
                                                          data: st.DataObject) -> None:
    stream = b"".join(replies)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    splitter = ReplySplitter(CHANNEL)
    payloads: list[bytes] = []
    times: list[int] = []
    position = 0
    while position < len(chunks):
        batch = data.draw(st.integers(min_value=1, max_value=3))
        batch_chunks = enumerate(chunks[position:position + batch], start=position)
        got = split_all(splitter, [(1, 100 + i, chunk, False) for i, chunk in batch_chunks])
        payloads += got.payloads.to_pylist()
        times += got.received_ns.tolist()
        position += batch
    assert payloads == hiredis_messages(stream)
    assert times == sorted(times)


def test_each_message_gets_the_time_of_the_chunk_that_completed_it() -> None:
    stream = message(b"a") + message(b"b")
    cut = len(message(b"a")) + 5
    got = split_all(ReplySplitter(CHANNEL), [(1, 10, stream[:cut], False), (1, 20, stream[cut:], False)])
    assert got.payloads.to_pylist() == [b"a", b"b"]
    assert got.received_ns.tolist() == [10, 20]


def test_a_resync_after_dropped_bytes_restarts_at_the_next_marker_and_counts_the_cut_reply() -> None:
    first, second = message(b"first"), message(b"second")
    splitter = ReplySplitter(CHANNEL)
    got = split_all(splitter, [(1, 1, first[:10], False)])  # a reply begun, its end then dropped
    assert len(got) == 0
    got = split_all(splitter, [(1, 2, b"tail of something" + second, True)])
    assert got.payloads.to_pylist() == [b"second"]
    assert got.lost == 1


def test_runs_are_handed_out_one_by_one_and_carry_the_lost_replies_before_them() -> None:
    splitter = ReplySplitter(CHANNEL)
    split_all(splitter, [(1, 1, message(b"cut")[:10], False)])  # its end is dropped below
    big = message(b"x" * (RUN_BYTES // 3))
    chunks = [(1, 2, b"junk" + big, True), *((1, 3 + i, big, False) for i in range(5))]
    runs = splitter.split_runs(chunks)
    first = next(runs)  # handed out before the rest is cut
    assert first.lost == 1 and len(first) >= 1
    rest = list(runs)
    assert len(rest) >= 1 and sum(run.lost for run in rest) == 0
    assert sum(len(run) for run in [first, *rest]) == 6
    # A resync with no whole message after it still reports its loss, in an empty last piece.
    split_all(splitter, [(1, 9, message(b"cut")[:10], False)])
    tail = list(splitter.split_runs([(1, 10, b"no marker here", True)]))
    assert [(len(run), run.lost) for run in tail] == [(0, 1)]


def test_a_new_connection_forgets_the_old_ones_unfinished_reply() -> None:
    splitter = ReplySplitter(CHANNEL)
    split_all(splitter, [(1, 1, message(b"cut")[:12], False)])
    got = split_all(splitter, [(2, 2, message(b"fresh"), False)])
    assert got.payloads.to_pylist() == [b"fresh"] and got.lost == 0


def test_a_stream_of_the_channels_messages_takes_the_vectorised_path() -> None:
    # The per-reply walk gives the same messages, only far slower: a change that
    # made the vectorised path give up on ordinary traffic would pass every test above.
    payloads = [b"x" * size for size in (0, 7, 42, 99, 100, 175, 1500, 12_345)]
    stream = b"".join(message(p) for p in payloads) + message(b"unfinished")[:-5]
    cut = ReplySplitter(CHANNEL)._tile(stream)
    assert cut is not None
    starts, stops, done = cut
    assert [stream[a:b] for a, b in zip(starts, stops, strict=True)] == payloads
    assert done == len(stream) - len(message(b"unfinished")) + 5
