"""Queue scores: first in, first out within a priority, for the toolkit and the Go service alike.

Every job the toolkit writes scores strictly inside its level, ``(-(p+1), -p)``
(docs/wire-format.md, "Scores"): the Go service's ``ZPOPMIN`` serves it in
arrival order and its three overlapping ``ZCOUNT`` ranges count it once.
Jobs the Go service adds are played with raw commands and keep Go's score.
"""

from __future__ import annotations

import math

import pytest
import redis

from botrix_toolkit import InvalidInputError, QueueService

# The Go service's GetQueueStats, as WIRE_FORMAT.md gives it (bounds inclusive).
GO_LEVEL_RANGES = {"high_priority": ("-inf", "-2"), "normal_priority": ("-2", "-1"),
                   "low_priority": ("-1", "+inf")}
# Level p's scores (docs/wire-format.md): -(p+1) + k * 2**-50, 0 < k < 2**50.
SCORE_UNIT = 2.0**-50
BACK_START = 2**49


def go_counts(client: redis.Redis, queue: QueueService) -> dict[str, int]:
    """The level counts as the Go service's GetQueueStats reads them."""
    return {level: client.zcount(queue.keys.queue, low, high) for level, (low, high) in GO_LEVEL_RANGES.items()}


def toolkit_counts(queue: QueueService) -> dict[str, int]:
    stats = queue.get_queue_stats()
    return {level: stats[level] for level in GO_LEVEL_RANGES}


def go_pop_all(queue: QueueService) -> list[str]:
    """Go's DequeueJob, ZPOPMIN, until the queue is empty."""
    popped = []
    while member := queue.redis.zpopmin(queue.keys.queue):
        popped.append(member[0][0].decode())
    return popped


def go_add(queue: QueueService, job_id: str, priority: int) -> None:
    """Go's AddJob, score -priority (events left out: nothing here reads them)."""
    keys = queue.keys
    queue.redis.set(keys.data(job_id), f'{{"id":"{job_id}","priority":{priority}}}', ex=3600)
    queue.redis.set(keys.status(job_id), "pending", ex=3600)
    queue.redis.zadd(keys.queue, {job_id: -priority})


def scores(queue: QueueService) -> dict[str, float]:
    return {m.decode(): s for m, s in queue.redis.zrange(queue.keys.queue, 0, -1, withscores=True)}


def assert_inside_its_level(score: float, priority: int) -> None:
    assert -(priority + 1) < score < -priority, (score, priority)


# -- first in, first out --------------------------------------------------------
# Ids that sort against their arrival: byte order (Go's tie-break) would reverse them.
ARRIVALS = [f"{letter}-job" for letter in "zyxwvutsrq"]


def test_add_jobs_in_list_order_is_served_first_in_first_out(queue: QueueService) -> None:
    queue.add_jobs({"id": job_id, "priority": 1} for job_id in ARRIVALS)
    assert [job.id for job in queue.get_pending_jobs()] == ARRIVALS
    assert [job.id for job in queue.dequeue_jobs(4)] == ARRIVALS[:4]
    assert [queue.dequeue_job().id for _ in range(6)] == ARRIVALS[4:]


def test_the_go_services_zpopmin_serves_toolkit_jobs_first_in_first_out(queue: QueueService) -> None:
    for job_id in ARRIVALS[:5]:
        queue.add_job({"id": job_id, "priority": "low"})
    queue.add_jobs({"id": job_id, "priority": "low"} for job_id in ARRIVALS[5:])
    assert go_pop_all(queue) == ARRIVALS


def test_priority_still_comes_first_and_each_level_is_fifo(queue: QueueService) -> None:
    added = [("n-z", 1), ("l-z", 0), ("h-z", 2), ("n-a", 1), ("h-a", 2), ("l-a", 0), ("n-m", 1)]
    queue.add_jobs({"id": i, "priority": p} for i, p in added)
    expected = ["h-z", "h-a", "n-z", "n-a", "n-m", "l-z", "l-a"]
    assert [job.id for job in queue.get_pending_jobs()] == expected
    assert go_pop_all(queue) == expected


def test_several_producers_share_one_order(redis_url: str, queue: QueueService) -> None:
    # Two services (as two producer processes would have) agree through the server's counter.
    other = QueueService.from_url(redis_url, prefix=queue.keys.prefix)
    try:
        for position, job_id in enumerate(ARRIVALS):
            (queue if position % 2 else other).add_job({"id": job_id})
        more = [f"batch-{n}" for n in range(3, 0, -1)]
        other.add_jobs({"id": job_id} for job_id in more)
    finally:
        other.close()
    assert [job.id for job in queue.dequeue_jobs(20)] == ARRIVALS + more


def test_batches_of_more_than_one_script_call_keep_list_order(queue: QueueService) -> None:
    ids = [f"j{n:05d}" for n in range(2500, 0, -1)]  # 25 script calls in 3 round trips
    queue.add_jobs({"id": job_id} for job_id in ids)
    assert go_pop_all(queue) == ids


# -- each level counted once ----------------------------------------------------
def test_gos_three_zcount_ranges_count_toolkit_jobs_exactly(queue: QueueService) -> None:
    queue.add_jobs([{"priority": 2}] * 3 + [{"priority": 1}] * 5 + [{"priority": 0}] * 7)
    expected = {"high_priority": 3, "normal_priority": 5, "low_priority": 7}
    assert go_counts(queue.redis, queue) == expected
    assert toolkit_counts(queue) == expected
    for job_id, score in scores(queue).items():
        assert_inside_its_level(score, queue.get_job(job_id).priority)


def test_counts_stay_exact_with_go_written_jobs_beside_toolkit_ones(queue: QueueService) -> None:
    queue.add_jobs([{"priority": 2}] * 2 + [{"priority": 1}] * 3 + [{"priority": 0}] * 4)
    for job_id, priority in [("go-h", 2), ("go-n", 1), ("go-l", 0), ("go-7", 7), ("go-minus", -1)]:
        go_add(queue, job_id, priority)
    assert toolkit_counts(queue) == {"high_priority": 4, "normal_priority": 4, "low_priority": 6}
    # Go's ranges still count its own jobs twice (defect 1), and only those.
    assert go_counts(queue.redis, queue) == {"high_priority": 4, "normal_priority": 5, "low_priority": 7}
    assert queue.get_queue_length() == 14


def test_go_added_jobs_keep_their_scores_and_follow_toolkit_jobs_of_their_level(queue: QueueService) -> None:
    go_add(queue, "go-normal", 1)
    queue.add_jobs([{"id": "tk-normal"}, {"id": "tk-high", "priority": 2}])
    go_add(queue, "go-high", 2)
    assert scores(queue)["go-normal"] == -1 and scores(queue)["go-high"] == -2
    assert [job.id for job in queue.get_pending_jobs()] == ["tk-high", "go-high", "tk-normal", "go-normal"]
    assert [job.priority for job in queue.get_pending_jobs()] == [2, 2, 1, 1]


def test_the_pending_frame_reads_the_priority_of_either_kind_of_score(queue: QueueService) -> None:
    queue.add_jobs([{"id": "tk-high", "priority": 2}, {"id": "tk-low", "priority": 0}])
    go_add(queue, "go-low", 0)
    go_add(queue, "go-minus-three", -3)
    frame = queue.pending_jobs_frame()
    by_id = dict(zip(frame["id"], frame["priority"]))
    assert by_id == {"tk-high": 2, "tk-low": 0, "go-low": 0, "go-minus-three": -3}


# -- put back: requeued, recovered, released -----------------------------------------
def test_a_requeued_failure_goes_to_the_back_of_its_lower_level(queue: QueueService) -> None:
    queue.add_jobs([{"id": "h1", "priority": 2}, {"id": "n1", "priority": 1}, {"id": "n2", "priority": 1}])
    assert queue.dequeue_job().id == "h1"
    queue.add_job({"id": "n3", "priority": 1})
    assert queue.fail_job("h1", requeue=True) is True
    assert_inside_its_level(scores(queue)["h1"], 1)
    assert go_pop_all(queue) == ["n1", "n2", "n3", "h1"]


def test_a_recovered_job_goes_to_the_front_of_its_level(queue: QueueService) -> None:
    queue.add_jobs({"id": job_id} for job_id in ["first", "second", "third"])
    queue.add_job({"id": "high", "priority": 2})
    assert [job.id for job in queue.dequeue_jobs(2)] == ["high", "first"]
    queue.add_jobs({"id": job_id} for job_id in ["fourth", "fifth"])
    assert sorted(queue.recover_stalled(timeout_s=0)) == ["first", "high"]
    assert_inside_its_level(scores(queue)["first"], 1)
    assert_inside_its_level(scores(queue)["high"], 2)
    assert go_pop_all(queue) == ["high", "first", "second", "third", "fourth", "fifth"]


def test_jobs_recovered_together_keep_the_order_they_were_claimed_in(queue: QueueService) -> None:
    queue.add_jobs({"id": job_id} for job_id in ["a", "b", "c", "d", "e"])
    for expected in ["a", "b", "c"]:
        assert queue.dequeue_job().id == expected
        age_lease(queue, expected, {"a": 30, "b": 20, "c": 10}[expected])
    assert sorted(queue.recover_stalled(timeout_s=5)) == ["a", "b", "c"]
    assert go_pop_all(queue) == ["a", "b", "c", "d", "e"]


def test_a_recovered_job_goes_ahead_of_jobs_added_later_into_an_empty_level(queue: QueueService) -> None:
    queue.add_job({"id": "only"})
    assert queue.dequeue_job().id == "only"
    assert queue.recover_stalled(timeout_s=0) == ["only"]
    queue.add_jobs([{"id": "later-1"}, {"id": "later-2"}])
    go_add(queue, "go-later", 1)
    assert go_pop_all(queue) == ["only", "later-1", "later-2", "go-later"]


def test_a_go_taken_job_recovered_goes_to_the_front_of_its_level(queue: QueueService) -> None:
    queue.add_jobs([{"id": "w1"}, {"id": "w2"}])
    go_add(queue, "go-held", 1)
    queue.redis.zrem(queue.keys.queue, "go-held")  # Go's DequeueJob took it, no lease
    queue.redis.sadd(queue.keys.processing, "go-held")
    queue.redis.set(queue.keys.status("go-held"), "running", ex=3600)
    assert queue.recover_stalled(timeout_s=0) == []  # first seen: a lease
    assert queue.recover_stalled(timeout_s=0) == ["go-held"]
    assert_inside_its_level(scores(queue)["go-held"], 1)
    assert [job.id for job in queue.dequeue_jobs(3)] == ["go-held", "w1", "w2"]


def test_released_jobs_go_back_to_the_front_in_the_order_given(queue: QueueService) -> None:
    queue.add_jobs({"id": job_id} for job_id in ["r1", "r2", "r3", "r4"])
    held = [job.id for job in queue.dequeue_jobs(2)]
    assert held == ["r1", "r2"]
    assert queue.release_jobs(held) == held
    assert go_pop_all(queue) == ["r1", "r2", "r3", "r4"]


# -- precision --------------------------------------------------------------------
def test_past_the_last_distinct_score_jobs_tie_inside_their_level(queue: QueueService) -> None:
    # Jump the counter to just before its last distinct value (2**49 - 1 adds).
    queue.redis.set(queue.keys.sequence, BACK_START - 4)
    queue.add_jobs({"id": job_id, "priority": 2} for job_id in ["z-1", "y-2", "x-3", "w-4"])
    found = scores(queue)
    assert found["z-1"] < found["y-2"] < found["x-3"], "the last distinct scores keep arrival order"
    assert found["x-3"] == found["w-4"] == -3 + (2 * BACK_START - 1) * SCORE_UNIT
    for score in found.values():
        assert_inside_its_level(score, 2)
    assert go_counts(queue.redis, queue) == {"high_priority": 4, "normal_priority": 0, "low_priority": 0}
    assert go_pop_all(queue) == ["z-1", "y-2", "w-4", "x-3"], "ties are served in id order, as Go's are"


@pytest.mark.parametrize("priority", [-8, -1, 0, 1, 2, 7])
def test_neighbouring_scores_differ_for_the_usual_priorities(priority: int) -> None:
    level = -(priority + 1)
    for k in (1, 2, BACK_START, BACK_START + 1, 2 * BACK_START - 2, 2 * BACK_START - 1):
        score, following = level + k * SCORE_UNIT, level + (k + 1) * SCORE_UNIT
        assert score < following
        assert (score - level) / SCORE_UNIT == k, "exact in a double"
        assert math.ceil(score) == -priority


def test_a_sequence_key_of_the_wrong_type_is_refused_with_nothing_added(queue: QueueService) -> None:
    from botrix_toolkit import WrongKeyTypeError

    queue.redis.hset(queue.keys.sequence, "not", "a counter")
    for add in (lambda: queue.add_job({"id": "one"}), lambda: queue.add_jobs([{"id": "a"}, {"id": "b"}])):
        with pytest.raises(WrongKeyTypeError, match="sequence"):
            add()
    assert queue.get_queue_length() == 0
    assert queue.redis.exists(queue.keys.data("one"), queue.keys.status("one"), queue.keys.data("a")) == 0


def test_add_job_rejects_bad_input_before_taking_a_sequence_number(queue: QueueService) -> None:
    with pytest.raises(InvalidInputError):
        queue.add_job({"id": "x", "priority": 9})
    assert queue.redis.exists(queue.keys.sequence) == 0


def age_lease(queue: QueueService, job_id: str, seconds: float) -> None:
    """Moves a job's lease ``seconds`` into the past (server clock, ms)."""
    now_s, now_us = queue.redis.time()
    queue.redis.zadd(queue.keys.leases, {job_id: now_s * 1000 + now_us // 1000 - seconds * 1000})
