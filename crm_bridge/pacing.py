"""Rate limits for outgoing messages: at most ``count`` sends in any ``per_seconds``
window, overall and per recipient (a chat, a channel).

The windows are measured from when a send *finished* (its answer came back) to when a
later one *starts*. A platform receives a request after we start it and before we get
its answer, so this bounds what the platform sees, whatever the network's jitter: a
limit computed from start times alone can be broken at the platform by one slow request
followed by a fast one. The price is one request in flight at a time per pacer, which
``Pacer.send`` enforces (about 10 messages a second against a 100 ms API, 30 against a
fast one): ample for a shop's notifications, and never over the limit.

The clock and the sleep are injectable, so the limits are tested with a fake clock.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Limit:
    """At most ``count`` sends in any window of ``per_seconds``."""

    count: int
    per_seconds: float

    def __post_init__(self) -> None:
        if self.count < 1 or self.per_seconds <= 0:
            raise ValueError("a limit needs a count of 1 or more and a positive window")


class _Window:
    """The finish times of the latest ``limit.count`` sends."""

    def __init__(self, limit: Limit) -> None:
        self.limit = limit
        self.finished: deque[float] = deque(maxlen=limit.count)

    def ready_at(self) -> float:
        if len(self.finished) < self.limit.count:
            return 0.0
        # The send ``count`` places back must have finished a whole window ago.
        return self.finished[0] + self.limit.per_seconds


class Pacer:
    """Spaces sends so that neither the overall nor any recipient's limit is exceeded."""

    def __init__(
        self,
        overall: Limit | None = None,
        per_key: Limit | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.overall = _Window(overall) if overall else None
        self.per_key_limit = per_key
        self._keys: dict[Hashable, _Window] = {}
        self._held_until = 0.0
        self._clock = clock
        self._sleep = sleep
        self._lock = asyncio.Lock()

    def ready_at(self, key: Hashable) -> float:
        """The earliest clock time a send to ``key`` may start."""
        at = self._held_until
        if self.overall is not None:
            at = max(at, self.overall.ready_at())
        window = self._keys.get(key)
        if window is not None:
            at = max(at, window.ready_at())
        return at

    def record(self, key: Hashable, finished_at: float | None = None) -> None:
        """A send to ``key`` finished (successfully or not: it reached the platform)."""
        at = self._clock() if finished_at is None else finished_at
        if self.overall is not None:
            self.overall.finished.append(at)
        if self.per_key_limit is not None:
            window = self._keys.get(key)
            if window is None:
                self._forget_idle(at)
                window = self._keys[key] = _Window(self.per_key_limit)
            window.finished.append(at)

    def hold(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (the platform answered 429 "retry after")."""
        self._held_until = max(self._held_until, self._clock() + seconds)

    async def wait(self, key: Hashable) -> None:
        """Sleep until a send to ``key`` may start."""
        while True:
            delay = self.ready_at(key) - self._clock()
            if delay <= 0:
                return
            await self._sleep(delay)

    async def send(self, key: Hashable, call: Callable[[], Awaitable[T]]) -> T:
        """Run ``call`` (one send to ``key``) when the limits allow, one at a time."""
        async with self._lock:
            await self.wait(key)
            try:
                return await call()
            finally:
                self.record(key)

    def _forget_idle(self, now: float) -> None:
        # Recipients whose window has passed no longer limit anything: keep memory flat
        # over a campaign to many chats.
        if len(self._keys) < 1024:
            return
        limit = self.per_key_limit.per_seconds if self.per_key_limit else 0.0
        for key in [k for k, w in self._keys.items() if w.finished[-1] + limit <= now]:
            del self._keys[key]
