"""The pacer, on a fake clock: overall and per-recipient windows, bursts, a 429's hold."""

from __future__ import annotations

import asyncio
import random
from functools import partial
from itertools import pairwise

import pytest

from crm_bridge.pacing import Limit, Pacer


class FakeClock:
    """A clock that only moves when the pacer sleeps (or a send takes time)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def max_in_window(times: list[float], window: float) -> int:
    """The most events in any half-open window [t, t + window)."""
    times = sorted(times)
    return max(sum(1 for u in times[i:] if u < t + window) for i, t in enumerate(times))


def burst(pacer: Pacer, clock: FakeClock, keys: list[str], latency: float = 0.0) -> list:
    starts: list[tuple[float, str]] = []

    async def one(key: str) -> None:
        starts.append((clock.now, key))
        clock.now += latency  # the request's round trip

    async def run() -> None:
        await asyncio.gather(*(pacer.send(k, partial(one, k)) for k in keys))

    asyncio.run(run())
    return starts


def test_telegram_limits_hold_for_a_burst_to_many_chats() -> None:
    clock = FakeClock()
    pacer = Pacer(Limit(30, 1.0), Limit(1, 1.0), clock=clock, sleep=clock.sleep)
    keys = [f"chat{i % 20}" for i in range(60)]
    starts = burst(pacer, clock, keys, latency=0.004)
    assert len(starts) == 60
    assert max_in_window([t for t, _ in starts], 1.0) <= 30
    for chat in set(keys):
        times = [t for t, k in starts if k == chat]
        assert all(b - a >= 1.0 for a, b in pairwise(times))
    # And it does not dawdle: 60 messages to 20 chats at 30/s take about 2 s, not 60.
    assert starts[-1][0] - starts[0][0] < 3.0


def test_windows_count_from_when_a_send_finished() -> None:
    clock = FakeClock()
    pacer = Pacer(per_key=Limit(1, 1.0), clock=clock, sleep=clock.sleep)
    starts = burst(pacer, clock, ["a", "a"], latency=0.3)
    # The first send took 0.3 s: the platform may have seen it as late as 0.3.
    assert starts[1][0] - starts[0][0] == pytest.approx(1.3)


def test_random_latencies_never_break_the_limits_at_the_platform() -> None:
    rng = random.Random(7)
    clock = FakeClock()
    pacer = Pacer(Limit(30, 1.0), Limit(1, 1.0), clock=clock, sleep=clock.sleep)
    arrivals: list[tuple[float, str]] = []

    async def one(key: str) -> None:
        # The platform sees the request somewhere inside its round trip.
        trip = rng.uniform(0.0, 0.05)
        arrivals.append((clock.now + rng.uniform(0, trip), key))
        clock.now += trip

    async def run() -> None:
        keys = [f"c{rng.randrange(15)}" for _ in range(200)]
        await asyncio.gather(*(pacer.send(k, partial(one, k)) for k in keys))

    asyncio.run(run())
    assert max_in_window([t for t, _ in arrivals], 1.0) <= 30
    by_key: dict[str, list[float]] = {}
    for t, k in arrivals:
        by_key.setdefault(k, []).append(t)
    assert all(b - a >= 1.0 for ts in by_key.values() for a, b in pairwise(ts))


def test_slack_allows_a_short_burst_then_one_a_second() -> None:
    clock = FakeClock()
    pacer = Pacer(per_key=Limit(3, 3.0), clock=clock, sleep=clock.sleep)
    starts = [t - 1000.0 for t, _ in burst(pacer, clock, ["D1"] * 6)]
    assert starts[:3] == [0.0, 0.0, 0.0]
    assert starts[3:] == pytest.approx([3.0, 3.0, 3.0])
    assert max_in_window(starts, 3.0) <= 3


def test_a_hold_delays_every_send() -> None:
    clock = FakeClock()
    pacer = Pacer(Limit(30, 1.0), clock=clock, sleep=clock.sleep)
    pacer.hold(5.0)
    assert pacer.ready_at("any") == pytest.approx(1005.0)
    starts = burst(pacer, clock, ["x"])
    assert starts[0][0] == pytest.approx(1005.0)


def test_a_failed_send_still_counts() -> None:
    clock = FakeClock()
    pacer = Pacer(per_key=Limit(1, 1.0), clock=clock, sleep=clock.sleep)

    async def failing() -> None:
        raise RuntimeError("platform said no")

    with pytest.raises(RuntimeError):
        asyncio.run(pacer.send("k", failing))
    assert pacer.ready_at("k") == pytest.approx(1001.0)


def test_limits_must_make_sense() -> None:
    with pytest.raises(ValueError):
        Limit(0, 1.0)
    with pytest.raises(ValueError):
        Limit(1, 0)
