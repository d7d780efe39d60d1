"""The queue on a real Redis Cluster: three local Valkey primaries, slots assigned here.

Every key of a queue shares the hash tag of its prefix, so each operation's
Lua script runs on one node; queues with different tags spread over the
nodes. Events published on one node reach a recorder on another (classic
pub/sub is broadcast over the cluster bus).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from uuid import uuid4

import pandas as pd
import pytest
import redis
from redis.cluster import RedisCluster

from botrix_toolkit import InvalidInputError, Job, JobNotFoundError, QueueService, SlotMovingError
from botrix_toolkit.bench.cluster import run_cluster_benchmark
from botrix_toolkit.core.cluster_routing import (
    cluster_client,
    hash_tag,
    node_client,
    prefix_slot,
    require_hash_tag,
)
from botrix_toolkit.core.worker import Worker
from botrix_toolkit.frames.events import EventRecorder
from botrix_toolkit.frames.groups import QueueGroup
from botrix_toolkit.server.local_cluster import LocalCluster, spread_prefixes
from tests.waiting import wait_for


@pytest.fixture(scope="session")
def local_cluster() -> Iterator[LocalCluster]:
    """Three primaries on free loopback ports, for the whole session."""
    with LocalCluster(3) as cluster:
        yield cluster


@pytest.fixture
def tagged_prefix() -> str:
    return f"{{test-{uuid4().hex[:10]}}}:jobs"


@pytest.fixture(params=[False, True], ids=["bytes", "decoded"])
def cq(request: pytest.FixtureRequest, local_cluster: LocalCluster, tagged_prefix: str) -> Iterator[QueueService]:
    """A QueueService on the cluster under a fresh hash-tagged prefix; keys removed after.

    Once on a RedisCluster that returns bytes, once on one that decodes
    responses: the toolkit must read both alike (test_clients.py).
    """
    service = QueueService.from_url(local_cluster.url, prefix=tagged_prefix, decode_responses=request.param)
    try:
        yield service
    finally:
        delete_cluster_keys(service.redis, tagged_prefix)
        service.close()


def delete_cluster_keys(client: RedisCluster, prefix: str) -> None:
    pattern = "".join(f"\\{c}" if c in "*?[]\\{}" else c for c in prefix) + "*"
    for node in client.get_primaries():
        node_redis = client.get_redis_connection(node)
        keys = list(node_redis.scan_iter(match=pattern, count=1000))
        if keys:
            node_redis.unlink(*keys)



def recorder_on_another_node(q: QueueService) -> EventRecorder:
    """A recorder connected to a node that does not hold the queue's slot."""
    client: RedisCluster = q.redis
    owner = client.get_node_from_key(q.keys.queue)
    other = next(node for node in client.get_primaries() if node.name != owner.name)
    return EventRecorder(client.get_redis_connection(other), channel=q.keys.updates)


# -- prefixes -------------------------------------------------------------------

@pytest.mark.parametrize(("prefix", "tag"), [
    ("{botrix:jobs}", "botrix:jobs"),
    ("{reports}:jobs", "reports"),
    ("app:{mail}", "mail"),
    ("botrix:jobs", None),
    ("{}botrix", None),
    ("{botrix", None),
    ("botrix}{", None),
])
def test_hash_tag_follows_the_cluster_rule(prefix: str, tag: str | None) -> None:
    assert hash_tag(prefix) == tag


def test_every_key_of_a_tagged_queue_is_in_one_slot() -> None:
    from redis.crc import key_slot

    from botrix_toolkit.core.keys import QueueKeys

    keys = QueueKeys("{botrix:jobs}")
    names = [keys.queue, keys.processing, keys.leases, keys.data("a"), keys.status("b:c"),
             keys.results("x{y}")]
    assert {key_slot(name.encode()) for name in names} == {prefix_slot("{botrix:jobs}")}


def test_a_prefix_without_hash_tag_is_refused_on_a_cluster(local_cluster: LocalCluster) -> None:
    with pytest.raises(InvalidInputError, match=r"hash tag.*'\{botrix:jobs\}'.*one slot"):
        QueueService.from_url(local_cluster.url)  # detected: the default prefix has no tag
    with pytest.raises(InvalidInputError, match="hash tag"):
        QueueService.from_url(local_cluster.url, prefix="reports", cluster=True)
    client = cluster_client(local_cluster.url)
    try:
        with pytest.raises(InvalidInputError, match="braces|hash tag"):
            QueueService(client, prefix="botrix:jobs")
    finally:
        client.close()
    assert require_hash_tag("{botrix:jobs}") == "{botrix:jobs}"


def test_from_url_detects_the_cluster(local_cluster: LocalCluster) -> None:
    with QueueService.from_url(local_cluster.urls[1], prefix="{botrix:jobs}") as q:
        assert isinstance(q.redis, RedisCluster)
        assert "cluster" in repr(q) or q.url == local_cluster.urls[1]
        assert q.health()


def test_a_single_server_is_not_taken_for_a_cluster(redis_url: str, key_prefix: str) -> None:
    with QueueService.from_url(redis_url, prefix=key_prefix) as q:
        assert not isinstance(q.redis, RedisCluster)
        assert isinstance(q.redis, redis.Redis)


# -- the core operations on a cluster --------------------------------------------

def test_core_operations_on_a_cluster(cq: QueueService) -> None:
    recorder = recorder_on_another_node(cq).start()
    try:
        assert cq.add_job({"id": "hi", "priority": 2, "password": "pw-secret"}) == "hi"
        ids = cq.add_jobs([{"id": f"n{i:03d}", "priority": i % 2} for i in range(250)])
        assert len(ids) == 250  # more than one script call per round trip: a node pipeline
        assert cq.get_queue_length() == 251
        assert cq.get_queue_stats() == {"queue_length": 251, "processing_count": 0,
                                        "high_priority": 1, "normal_priority": 125,
                                        "low_priority": 125, "ttl_seconds": 3600}
        pending = cq.pending_jobs_frame(limit=5)
        assert pending["id"].tolist() == ["hi", "n001", "n003", "n005", "n007"]
        assert pending.loc[0, "password"] == "***"
        assert len(cq.get_pending_jobs()) == 251

        first = cq.dequeue_job()
        assert first is not None and first.id == "hi" and first.password == "pw-secret"
        cq.complete_job("hi")
        assert cq.get_job_status("hi") == "completed"

        taken = cq.dequeue_jobs(4)
        assert [job.id for job in taken] == ["n001", "n003", "n005", "n007"]
        assert cq.is_job_processing("n001") and cq.get_processing_count() == 4
        processing = cq.processing_frame()
        assert sorted(processing["id"]) == ["n001", "n003", "n005", "n007"]
        assert processing["held_s"].notna().all()
        assert cq.complete_jobs(["n001"]) == ["n001"]
        assert cq.fail_job("n003", requeue=True) is True
        assert cq.get_job("n003").priority == 0 and cq.get_job_status("n003") == "pending"
        assert cq.fail_job("n005") is False and cq.get_job_status("n005") == "failed"
        cq.cancel_job("n007")
        cq.cancel_job("n000")  # a pending one
        assert cq.get_job_status("n000") == "cancelled"

        held = cq.dequeue_job()
        assert held is not None
        assert cq.recover_stalled(0) == [held.id]
        assert cq.get_job_status(held.id) == "pending"

        cq.save_job_result("n001", {"ok": [1, 2]})
        assert cq.get_job_result("n001") == '{"ok": [1, 2]}'

        cq.redis.delete(cq.keys.data("n010"))
        assert cq.prune_orphans() == ["n010"]
        # MGET of same-slot keys works straight on the cluster client
        data = cq.redis.mget([cq.keys.data("n012"), cq.keys.data("n014")])
        assert [Job.from_wire(d).id for d in data] == ["n012", "n014"]

        remaining = cq.get_queue_length()
        assert cq.clear_queue() == remaining
        assert cq.get_queue_length() == 0
        with pytest.raises(JobNotFoundError):
            cq.complete_job("never-added")

        expected_completed = 2  # hi, n001
        wait_for(lambda: (recorder.frame()["event"] == "job_completed").sum() >= expected_completed,
                 "job_completed events from the queue's node")
        wait_for(lambda: (recorder.frame()["event"] == "job_cancelled").sum() >= 2 + remaining,
                 "the clear's job_cancelled events")
    finally:
        recorder.stop()
    events = recorder.frame()
    counts = events["event"].value_counts()
    assert counts["job_added"] == 251 + 1 + 1  # adds, the requeue, the recovery
    assert counts["job_completed"] == 2
    assert counts["job_failed"] == 1
    assert counts["job_recovered"] == 1
    assert counts["job_orphan_removed"] == 1
    assert recorder.gaps().empty
    assert not events["data"].astype(str).str.contains("pw-secret").any()


def test_event_recorder_works_on_a_cluster_service(cq: QueueService) -> None:
    # subscribed through one node: classic pub/sub reaches it from every node
    with EventRecorder(cq) as recorder:
        cq.add_job({"id": "via-helper"})
        wait_for(lambda: recorder.received >= 2, "the add's two events")
    assert recorder.frame()["event"].tolist() == ["status_updated", "job_added"]
    assert isinstance(node_client(cq.redis), redis.Redis)


def test_subscribe_on_a_cluster_receives_the_queue_events(cq: QueueService) -> None:
    pubsub = cq.subscribe()
    try:
        cq.add_job({"id": "sub"})
        messages = []
        deadline = time.monotonic() + 10
        while len(messages) < 2 and time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.5)
            if message and message["type"] == "message":
                messages.append(message)
    finally:
        pubsub.close()
    # messages come as the client decodes them: the PubSub is the caller's own client's
    channel = cq.keys.updates if cq.redis.get_encoder().decode_responses else cq.keys.updates.encode()
    assert [m["channel"] for m in messages] == [channel] * 2


def test_a_worker_runs_on_a_cluster_queue(cq: QueueService) -> None:
    cq.add_jobs([{"id": f"w{i}"} for i in range(40)])
    stats = Worker(cq, lambda job: {"done": job.id}, concurrency=2, batch=5).run(until_empty=True)
    assert stats.completed == 40
    assert cq.get_queue_length() == 0 and cq.get_processing_count() == 0
    assert cq.get_job_result("w7") == '{"done": "w7"}'


# -- a slot moving to another node (resharding) -------------------------------------

@pytest.fixture(scope="module")
def resharded_cluster() -> Iterator[LocalCluster]:
    """Two primaries of its own: these tests move slots, which others should not see."""
    with LocalCluster(2) as cluster:
        yield cluster


@pytest.fixture
def mq(resharded_cluster: LocalCluster) -> Iterator[QueueService]:
    service = QueueService.from_url(resharded_cluster.url, prefix=f"{{move-{uuid4().hex[:10]}}}:jobs")
    try:
        yield service
    finally:
        with contextlib.suppress(redis.exceptions.ResponseError):  # a failed test may leave its slot moving
            delete_cluster_keys(service.redis, service.keys.prefix)
        service.close()


class SlotMove:
    """Moves the slot of a queue to the other node step by step, as ``redis-cli --cluster reshard`` does."""

    def __init__(self, client: RedisCluster, key: str) -> None:
        self.slot = client.keyslot(key)
        source = client.get_node_from_key(key)
        target = next(node for node in client.get_primaries() if node.name != source.name)
        self.target_address = (target.host, target.port)
        self.source, self.target = client.get_redis_connection(source), client.get_redis_connection(target)
        self.every_node = [client.get_redis_connection(node) for node in client.get_primaries()]

    def begin(self) -> None:
        source_id, target_id = (node.execute_command("CLUSTER MYID") for node in (self.source, self.target))
        self.target.execute_command("CLUSTER SETSLOT", self.slot, "IMPORTING", source_id)
        self.source.execute_command("CLUSTER SETSLOT", self.slot, "MIGRATING", target_id)
        self.target_id = target_id

    def migrate(self, keys: list[str]) -> None:
        self.source.execute_command("MIGRATE", *self.target_address, "", 0, 5000, "KEYS", *keys)

    def finish(self) -> None:
        while keys := self.source.execute_command("CLUSTER GETKEYSINSLOT", self.slot, 1000):
            self.migrate(keys)
        for node in self.every_node:
            node.execute_command("CLUSTER SETSLOT", self.slot, "NODE", self.target_id)


def test_batched_reads_and_adds_follow_a_queue_whose_slot_has_moved(mq: QueueService) -> None:
    mq.add_jobs([{"id": f"a{i:02d}", "priority": i % 3} for i in range(50)])
    held = sorted(job.id for job in mq.dequeue_jobs(5))
    move = SlotMove(mq.redis, mq.keys.queue)
    move.begin()
    move.finish()
    # The service's slot map still names the old node, which answers MOVED to a
    # pipeline: the map is refreshed and the commands sent again.
    assert mq.get_queue_stats()["queue_length"] == 45
    assert len(mq.pending_jobs_frame()) == 45
    assert sorted(mq.processing_frame()["id"]) == held
    mq.add_jobs([{"id": f"b{i:03d}"} for i in range(250)])  # three script calls in one pipeline
    assert mq.get_queue_length() == 295
    assert mq.redis.get_node_from_key(mq.keys.queue).port == move.target_address[1]


def test_a_claim_never_fails_nor_loses_a_job_whose_keys_are_moving(mq: QueueService) -> None:
    ids = [f"m{i:02d}" for i in range(20)]
    mq.add_jobs({"id": job_id} for job_id in ids)
    served = [mq.dequeue_job().id]  # processing and leases now exist on the old node
    move = SlotMove(mq.redis, mq.keys.queue)
    move.begin()
    move.migrate([mq.keys.data(job_id) for job_id in ids[10:]])  # half the jobs' data has left
    with pytest.raises(SlotMovingError, match="moved to another cluster node"):
        while True:
            served += [job.id for job in mq.dequeue_jobs(3)]
    assert served == ids[:10]  # every job still wholly here, then a refusal that changed nothing
    assert mq.get_job_status("m10") == "pending"
    move.finish()
    while jobs := mq.dequeue_jobs(4):
        served += [job.id for job in jobs]
    assert served == ids
    assert {mq.get_job_status(job_id) for job_id in ids} == {"running"}


def test_recovery_leaves_a_stalled_job_whose_keys_are_moving_held(mq: QueueService) -> None:
    # one job stays queued: with the queue key gone from the old node, the whole
    # script would be refused there (TRYAGAIN) until the move ends
    mq.add_jobs({"id": f"s{i}"} for i in range(6))
    assert len(mq.dequeue_jobs(5)) == 5
    move = SlotMove(mq.redis, mq.keys.queue)
    move.begin()
    move.migrate([mq.keys.data("s0"), mq.keys.status("s1")])
    assert sorted(mq.recover_stalled(timeout_s=0)) == ["s2", "s3", "s4"]
    assert mq.get_processing_count() == 2 and mq.get_job_status("s0") == "running"
    move.finish()
    assert sorted(mq.recover_stalled(timeout_s=0)) == ["s0", "s1"]
    assert mq.get_queue_length() == 6 and mq.get_processing_count() == 0


def test_a_script_refused_for_the_whole_move_raises_slot_moving_and_changes_nothing(mq: QueueService) -> None:
    mq.add_job({"id": "only"})
    assert mq.dequeue_job().id == "only"  # the queue key is gone: declared keys are now split
    move = SlotMove(mq.redis, mq.keys.queue)
    move.begin()
    move.migrate([mq.keys.processing])
    with pytest.raises(SlotMovingError) as error:
        mq.recover_stalled(timeout_s=0)
    assert isinstance(error.value, ConnectionError)  # a Worker backs off and tries again
    move.finish()
    assert mq.recover_stalled(timeout_s=0) == ["only"]


# -- many queues ------------------------------------------------------------------

@pytest.fixture
def spread_group(local_cluster: LocalCluster) -> Iterator[QueueGroup]:
    client = cluster_client(local_cluster.url)
    base = f"grp-{uuid4().hex[:8]}"
    prefixes = spread_prefixes(client, 3, base=base)
    client.close()
    group = QueueGroup.from_url(local_cluster.url, prefixes)
    try:
        yield group
    finally:
        for name in group:
            delete_cluster_keys(group[name].redis, name)
        group.close()


def test_spread_prefixes_land_on_different_nodes(spread_group: QueueGroup) -> None:
    client: RedisCluster = spread_group[spread_group.names[0]].redis
    owners = {client.get_node_from_key(spread_group[name].keys.queue).name
              for name in spread_group}
    assert len(owners) == 3


def test_queue_group_frames_cover_every_queue(spread_group: QueueGroup) -> None:
    names = spread_group.names
    for position, name in enumerate(names):
        spread_group[name].add_jobs([{"id": f"{name}-{i}", "priority": 2 if i == 0 else 1}
                                     for i in range(position + 2)])
    spread_group[names[2]].dequeue_job()

    stats = spread_group.stats_frame()
    assert stats["queue"].tolist() == names
    assert stats["queue"].dtype == "string"
    assert stats["queue_length"].tolist() == [2, 3, 3]
    assert stats["processing_count"].tolist() == [0, 0, 1]
    assert spread_group.get_queue_stats()[names[1]]["high_priority"] == 1

    pending = spread_group.pending_jobs_frame(limit=2)
    assert pending["queue"].tolist() == [names[0]] * 2 + [names[1]] * 2 + [names[2]] * 2
    assert pending.groupby("queue")["rank"].apply(list).tolist() == [[0, 1]] * 3
    assert pending["id"].tolist()[:2] == [f"{names[0]}-0", f"{names[0]}-1"]

    processing = spread_group.processing_frame()
    assert processing["queue"].tolist() == [names[2]]
    assert processing["id"].tolist() == [f"{names[2]}-0"]
    assert spread_group.health() == dict.fromkeys(names, True)


def test_queue_group_of_an_empty_queue_keeps_the_columns(spread_group: QueueGroup) -> None:
    frame = spread_group.processing_frame()
    assert frame.empty and frame.columns[0] == "queue"
    assert "held_s" in frame.columns


def test_queue_group_on_one_server_names_queues_by_prefix(redis_url: str) -> None:
    prefixes = [f"test:{uuid4().hex[:8]}:a", f"test:{uuid4().hex[:8]}:b"]
    services = [QueueService.from_url(redis_url, prefix=p) for p in prefixes]
    group = QueueGroup(services)
    try:
        services[1].add_job({"id": "only-b"})
        assert group.names == prefixes
        frame = group.pending_jobs_frame()
        assert frame["queue"].tolist() == [prefixes[1]]
        pd.testing.assert_series_equal(
            group.stats_frame()["queue_length"], pd.Series([0, 1], name="queue_length"))
        with pytest.raises(InvalidInputError, match="no queue"):
            group["missing"]
        with pytest.raises(InvalidInputError):
            QueueGroup([])
        with pytest.raises(InvalidInputError, match="twice"):
            QueueGroup([services[0], services[0]])
    finally:
        services[1].cancel_job("only-b")
        for service in services:
            service.redis.delete(service.keys.status("only-b"), service.keys.data("only-b"))
        group.close()


# -- benchmark -----------------------------------------------------------------------

@pytest.mark.slow
def test_cluster_benchmark_measures_both_layouts(local_cluster: LocalCluster) -> None:
    result = run_cluster_benchmark(local_cluster.url, queues=3, batch=100, measure_s=0.5,
                                   warmup_s=0.2)
    assert result.single_queue_jobs_per_s > 0 and result.spread_jobs_per_s > 0
    assert result.nodes == 3 and result.queues == 3
    assert result.ratio == pytest.approx(result.spread_jobs_per_s / result.single_queue_jobs_per_s)
    assert "jobs/s" in str(result)
    client = cluster_client(local_cluster.url)
    try:
        leftovers = sum(len(list(client.get_redis_connection(node).scan_iter(match="*bench*")))
                        for node in client.get_primaries())
    finally:
        client.close()
    assert leftovers == 0
