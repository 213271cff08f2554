"""A client-side rate limiter shared by every worker thread of a process.

Remote CRMs limit requests per app in sliding windows (HubSpot: about 190 requests per
10 s for a private app, 4 per second on search). A token bucket would let twice its size
through within one window (a full bucket, then a refill), so this keeps a log of the
request times of each window instead: a request is let through only when every window it
counts in has room, which bounds the count in *any* window, not just on average.

One :class:`RateLimiter` per remote CRM and process (:func:`shared_limiter`): the outbox
may run several workers and each builds its own adapter, but they share one app's quota.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    """At most ``limit`` requests in any ``seconds``-long window."""

    limit: int
    seconds: float

    def __post_init__(self) -> None:
        if self.limit < 1 or self.seconds <= 0:
            raise ValueError(f"a rate window needs a positive limit and length, got {self}")


class RateLimiter:
    """Blocks callers until a request of their kind fits every window it counts in.

    ``windows`` names each window; ``kinds`` says which windows a request kind counts in
    (a kind not listed counts in ``default``). ``clock`` and ``sleep`` are injectable so
    that tests can run the real limits on a fake clock.
    """

    def __init__(
        self,
        windows: Mapping[str, Window],
        kinds: Mapping[str, Sequence[str]],
        default: Sequence[str],
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        unknown = {w for names in [*kinds.values(), default] for w in names} - set(windows)
        if unknown:
            raise ValueError(f"unknown rate windows: {sorted(unknown)}")
        self.windows = dict(windows)
        self.kinds = {kind: tuple(names) for kind, names in kinds.items()}
        self.default = tuple(default)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._sent: dict[str, deque[float]] = {name: deque() for name in windows}
        self._paused_until = float("-inf")

    def acquire(self, kind: str = "request") -> float:
        """Wait until a request of ``kind`` may go, count it, and return the seconds waited."""
        names = self.kinds.get(kind, self.default)
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                delay = self._delay(names, now)
                if delay <= 0:
                    for name in names:
                        self._sent[name].append(now)
                    return waited
            # Sleep outside the lock: other workers may still check (and wait) meanwhile.
            self._sleep(delay)
            waited += delay

    def pause(self, seconds: float) -> None:
        """Let no request go for ``seconds`` (the CRM answered 429 with this Retry-After)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + max(seconds, 0.0))

    def _delay(self, names: Sequence[str], now: float) -> float:
        delay = self._paused_until - now
        for name in names:
            window, sent = self.windows[name], self._sent[name]
            while sent and sent[0] <= now - window.seconds:
                sent.popleft()
            if len(sent) >= window.limit:
                # Room again when the oldest request in the window leaves it.
                delay = max(delay, sent[0] + window.seconds - now)
        return delay


# HubSpot: about 190 requests per 10 s per private app (100 on lower tiers) and 4 per
# second on the search endpoints. Our windows are a little longer than HubSpot's, so that
# network jitter between our clock and HubSpot's cannot squeeze one request too many into
# one of theirs.
MARGIN_SECONDS = 0.1


def hubspot_limiter(
    requests_per_10s: int = 190,
    searches_per_second: int = 4,
    time_scale: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> RateLimiter:
    """HubSpot's limits as a limiter: a search counts in both windows, any other request
    in the first (``time_scale`` < 1 shortens HubSpot's windows, for tests)."""
    return RateLimiter(
        windows={
            "requests": Window(requests_per_10s, 10.0 * time_scale + MARGIN_SECONDS),
            "search": Window(searches_per_second, 1.0 * time_scale + MARGIN_SECONDS),
        },
        kinds={"search": ("requests", "search")},  # a search counts against both
        default=("requests",),
        clock=clock,
        sleep=sleep,
    )


_registry: dict[str, RateLimiter] = {}
_registry_lock = threading.Lock()


def shared_limiter(name: str, build: Callable[[], RateLimiter]) -> RateLimiter:
    """The process's limiter called ``name`` (e.g. ``hubspot``), built on first use.

    Every adapter of the same CRM in this process gets the same limiter, so all outbox
    workers together stay under the CRM's per-app limits.
    """
    with _registry_lock:
        limiter = _registry.get(name)
        if limiter is None:
            limiter = _registry[name] = build()
        return limiter


def forget_limiters() -> None:
    """Drop every shared limiter (tests that change the limits between cases)."""
    with _registry_lock:
        _registry.clear()
