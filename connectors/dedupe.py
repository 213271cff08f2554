"""Process each platform delivery once, even when it arrives twice at the same moment.

Telegram re-sends an update and Slack retries an event when they think we did not get
it. With Redis configured, ``SET NX`` with a 24 h expiry makes the first claim win across
every Rasa instance; without it, an in-process table does the same for one process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Any

logger = logging.getLogger(__name__)

SEEN_TTL_SECONDS = 24 * 60 * 60
MAX_LOCAL_KEYS = 100_000
REDIS_TIMEOUT_SECONDS = 2.0


class Deduplicator:
    """``await first_time(key)`` is True for the first claim of a key within the TTL."""

    def __init__(self, redis_url: str = "", namespace: str = "rapport:seen") -> None:
        self._namespace = namespace
        self._redis_url = redis_url
        self._redis: Any = None
        self._local: OrderedDict[str, float] = OrderedDict()
        self._lock = asyncio.Lock()

    async def first_time(self, key: str) -> bool:
        """Claim ``key``; False if it was already claimed within the last 24 hours."""
        if self._redis_url:
            return await self._claim_in_redis(f"{self._namespace}:{key}")
        async with self._lock:
            now = time.monotonic()
            self._forget_expired(now)
            if key in self._local:
                return False
            self._local[key] = now
            if len(self._local) > MAX_LOCAL_KEYS:
                self._local.popitem(last=False)
            return True

    async def _claim_in_redis(self, key: str) -> bool:
        if self._redis is None:
            import redis.asyncio as redis  # type: ignore[import-untyped]

            self._redis = redis.Redis.from_url(
                self._redis_url,
                socket_timeout=REDIS_TIMEOUT_SECONDS,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            )
        claimed = await self._redis.set(key, "1", nx=True, ex=SEEN_TTL_SECONDS)
        return bool(claimed)

    def _forget_expired(self, now: float) -> None:
        while self._local:
            oldest_key, seen_at = next(iter(self._local.items()))
            if now - seen_at < SEEN_TTL_SECONDS:
                break
            self._local.pop(oldest_key)
