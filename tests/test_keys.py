"""keys.py: every name of a queue comes from its prefix, and the operations write no other key."""

from __future__ import annotations

import pytest
import redis
from redis.crc import key_slot

from botrix_toolkit.core.errors import InvalidInputError
from botrix_toolkit.core.keys import DEFAULT_PREFIX, QueueKeys
from botrix_toolkit.core.queue import QueueService


def test_names_are_the_go_services_under_the_prefix() -> None:
    keys = QueueKeys("p")
    assert (keys.queue, keys.processing, keys.leases, keys.updates) == (
        "p:queue", "p:processing", "p:leases", "p:updates")
    assert (keys.data("7"), keys.status("7"), keys.results("7")) == ("p:data:7", "p:status:7", "p:results:7")
    assert keys.data("7") == keys.data_prefix + "7" and keys.status("7") == keys.status_prefix + "7"
    assert keys.script_head == (keys.queue, keys.processing, keys.leases)
    assert QueueKeys().queue == f"{DEFAULT_PREFIX}:queue" == "botrix:jobs:queue"


@pytest.mark.parametrize("prefix", ["", None, 3])
def test_a_prefix_that_is_not_a_non_empty_string_is_refused(prefix: object) -> None:
    with pytest.raises(InvalidInputError, match="prefix"):
        QueueKeys(prefix)  # type: ignore[arg-type]


def test_a_hash_tag_in_the_prefix_puts_every_key_in_one_cluster_slot() -> None:
    keys = QueueKeys("{botrix:jobs}")
    names = [keys.queue, keys.processing, keys.leases, keys.data("a"), keys.status("b"), keys.results("c")]
    assert len({key_slot(name.encode()) for name in names}) == 1


def test_the_operations_write_only_keys_that_keys_py_names(
    queue: QueueService, redis_client: redis.Redis, key_prefix: str
) -> None:
    keys = QueueKeys(key_prefix)
    with queue.subscribe() as pubsub:
        pubsub.get_message(timeout=5)  # the subscribe confirmation
        done = queue.add_job({"id": "done", "priority": "high"})
        queue.add_jobs([{"id": "failed"}, {"id": "waiting", "priority": "low"}])
        first, second = queue.dequeue_job(), queue.dequeue_job()
        assert first is not None and second is not None and (first.id, second.id) == (done, "failed")
        queue.save_job_result(done, {"ok": True})
        queue.complete_job(done)
        queue.fail_job("failed", requeue=True)
        queue.dequeue_jobs(2)
        queue.recover_stalled(timeout_s=0)
        message = pubsub.get_message(timeout=5)
        assert message is not None and message["channel"] == keys.updates.encode()
    ids = ("done", "failed", "waiting")
    named = {keys.queue, keys.processing, keys.leases, keys.sequence}
    named |= {name(job_id) for job_id in ids for name in (keys.data, keys.status, keys.results)}
    written = {key.decode() for key in redis_client.scan_iter(match=f"{key_prefix}*", count=1000)}
    assert written <= named
    assert {keys.queue, keys.data("done"), keys.status("done"), keys.results("done")} <= written
