"""The sign-in throttle on its own (no Streamlit, no server): a clock the test moves by hand."""

from __future__ import annotations

import threading

from botrix_toolkit.dashboard.signin_throttle import (
    CLIENT_FREE_FAILURES,
    CLIENT_MAX_DELAY_S,
    FORGET_AFTER_S,
    OVERALL_FREE_FAILURES,
    OVERALL_MAX_DELAY_S,
    SignInThrottle,
    doubling_delay,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_client_waits_twice_as_long_after_each_failure_past_the_free_ones() -> None:
    clock = Clock()
    throttle = SignInThrottle(clock)
    waits = []
    for _ in range(CLIENT_FREE_FAILURES + 4):
        assert throttle.wait_s("10.0.0.1") == 0  # each try made once the wait is over
        waits.append(throttle.record_failure("10.0.0.1").wait_s)
        clock.now += waits[-1]
    assert waits == [0.0] * CLIENT_FREE_FAILURES + [1.0, 2.0, 4.0, 8.0]
    # another address is not slowed down by this one's failures
    assert throttle.wait_s("10.0.0.2") == 0


def test_the_wait_is_counted_from_the_failure_and_ends() -> None:
    clock = Clock()
    throttle = SignInThrottle(clock)
    for _ in range(CLIENT_FREE_FAILURES + 1):
        throttle.record_failure("a")
    assert throttle.wait_s("a") == 1.0
    clock.now += 0.4
    assert abs(throttle.wait_s("a") - 0.6) < 1e-9
    clock.now += 0.6
    assert throttle.wait_s("a") == 0


def test_301_guesses_from_one_client_cost_hours_not_seconds() -> None:
    """The issue's attack: 301 wrong passwords; each made as soon as it is allowed."""
    clock = Clock()
    throttle = SignInThrottle(clock)
    start = clock.now
    for _ in range(301):
        clock.now += throttle.wait_s("attacker")
        throttle.record_failure("attacker")
    # at most CLIENT_MAX_DELAY_S each once the doubling has reached it
    assert clock.now - start > 250 * CLIENT_MAX_DELAY_S


def test_many_addresses_together_are_slowed_down_but_never_for_more_than_a_minute() -> None:
    clock = Clock()
    throttle = SignInThrottle(clock)
    for n in range(OVERALL_FREE_FAILURES):
        assert throttle.record_failure(f"10.1.0.{n}").wait_s == 0  # one failure each: free
    verdict = throttle.record_failure("10.1.1.1")
    assert verdict.wait_s == 1.0 and verdict.overall_failures == OVERALL_FREE_FAILURES + 1
    assert throttle.wait_s("10.9.9.9") == 1.0  # everyone waits
    for n in range(40):
        clock.now += throttle.wait_s("x")
        throttle.record_failure(f"10.2.0.{n}")
    assert 0 < throttle.wait_s("x") <= OVERALL_MAX_DELAY_S


def test_success_forgets_the_clients_failures_and_time_forgets_everything() -> None:
    clock = Clock()
    throttle = SignInThrottle(clock)
    for _ in range(CLIENT_FREE_FAILURES + 2):
        throttle.record_failure("a")
    clock.now += throttle.wait_s("a")
    throttle.record_success("a")
    assert throttle.record_failure("a").wait_s == 0  # counting starts again
    for _ in range(CLIENT_FREE_FAILURES + 2):
        throttle.record_failure("b")
    clock.now += FORGET_AFTER_S + 1
    verdict = throttle.record_failure("b")
    assert verdict.client_failures == 1 and verdict.overall_failures == 1


def test_failures_from_many_threads_are_all_counted() -> None:
    throttle = SignInThrottle(Clock())
    threads = [threading.Thread(target=lambda: [throttle.record_failure("a") for _ in range(50)])
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert throttle.record_failure("a").client_failures == 401


def test_doubling_delay_never_overflows() -> None:
    assert doubling_delay(10**6, 3, 1.0, 300.0) == 300.0
    assert doubling_delay(3, 3, 1.0, 300.0) == 0.0
