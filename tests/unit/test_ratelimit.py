"""The client-side rate limiter: HubSpot's real limits on a fake clock, Retry-After pauses,
one limiter per process, and many threads never exceeding a window."""

from __future__ import annotations

import threading
import time

import pytest

from crm_bridge.remote.ratelimit import (
    MARGIN_SECONDS,
    RateLimiter,
    Window,
    forget_limiters,
    hubspot_limiter,
    shared_limiter,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0  # never a busy loop
        self.now += seconds


def most_in_window(times: list[float], seconds: float) -> int:
    most, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= seconds:
            start += 1
        most = max(most, end - start + 1)
    return most


def test_hubspot_limits_hold_in_every_window_on_a_fake_clock() -> None:
    clock = FakeClock()
    limiter = hubspot_limiter(190, 4, clock=clock, sleep=clock.sleep)
    sent: list[tuple[float, str]] = []
    for n in range(1500):
        kind = "search" if n % 3 == 0 else "request"
        limiter.acquire(kind)
        sent.append((clock.now, kind))

    everything = [at for at, _ in sent]
    searches = [at for at, kind in sent if kind == "search"]
    assert most_in_window(everything, 10.0) <= 190
    assert most_in_window(searches, 1.0) <= 4
    # Searches (500 at 4 per 1.1 s) set the pace; nothing waits longer than they need.
    assert clock.now - 1000.0 == pytest.approx(499 // 4 * (1.0 + MARGIN_SECONDS), rel=0.01)


def test_plain_requests_use_the_10_second_budget_in_full() -> None:
    clock = FakeClock()
    limiter = hubspot_limiter(190, 4, clock=clock, sleep=clock.sleep)
    for _ in range(190):
        assert limiter.acquire() == 0.0  # a burst of 190 goes at once
    assert limiter.acquire() == pytest.approx(10.0 + MARGIN_SECONDS)  # the 191st waits
    lower_tier = hubspot_limiter(100, 4, clock=clock, sleep=clock.sleep)
    for _ in range(100):
        lower_tier.acquire()
    assert lower_tier.acquire() > 10.0


def test_a_retry_after_pauses_every_kind() -> None:
    clock = FakeClock()
    limiter = hubspot_limiter(clock=clock, sleep=clock.sleep)
    limiter.acquire()
    limiter.pause(7.0)
    assert limiter.acquire() == pytest.approx(7.0)
    limiter.pause(3.0)
    limiter.pause(1.0)  # a shorter pause does not cut a longer one short
    assert limiter.acquire("search") == pytest.approx(3.0)


def test_threads_sharing_a_limiter_never_exceed_a_window() -> None:
    limiter = RateLimiter({"w": Window(5, 0.05)}, kinds={}, default=("w",))
    granted: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(10):
            limiter.acquire()
            with lock:
                granted.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # The limiter's own clock reading is taken before ours: allow a hair of slack.
    assert most_in_window(sorted(granted), 0.05 - 0.002) <= 5
    assert len(granted) == 60


def test_one_limiter_per_name_and_process() -> None:
    forget_limiters()
    try:
        first = shared_limiter("hubspot", hubspot_limiter)
        assert shared_limiter("hubspot", lambda: pytest.fail("built twice")) is first
        assert shared_limiter("salesforce", hubspot_limiter) is not first
    finally:
        forget_limiters()


def test_a_window_must_make_sense() -> None:
    with pytest.raises(ValueError):
        Window(0, 1.0)
    with pytest.raises(ValueError, match="unknown rate windows"):
        RateLimiter({"a": Window(1, 1.0)}, kinds={"search": ("b",)}, default=("a",))
