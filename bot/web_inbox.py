"""Messages waiting for a web chat customer: an agent's reply, the rating question.

Telegram and Slack can be written to at any time; a web page cannot, it has to ask. So a
push puts the message in the conversation's inbox and the page's next request takes it.
With Redis configured, the inbox is a Redis list per conversation (kept 24 h, newest
``MAX_MESSAGES``), so a message stored by one Rasa instance is delivered by any other and
is still there after a reload; without it, an in-process table does the same for one
process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from typing import Any

from crm_bridge.errors import Unavailable

logger = logging.getLogger(__name__)

INBOX_TTL_SECONDS = 24 * 60 * 60
MAX_MESSAGES = 50
MAX_LOCAL_CONVERSATIONS = 10_000
REDIS_TIMEOUT_SECONDS = 2.0
# A push on this instance wakes a waiting request at once; one made on another instance
# is only seen in Redis, so a waiting request looks there this often.
REDIS_CHECK_SECONDS = 1.0

Message = dict[str, Any]


class InboxUnavailable(Unavailable):
    """Redis could not be reached in time; nothing was stored or taken."""


class WebInbox:
    """``put`` a message for a conversation; ``take`` or ``wait`` returns and removes them."""

    def __init__(
        self,
        redis_url: str = "",
        namespace: str = "rapport:web:inbox",
        ttl_seconds: float = INBOX_TTL_SECONDS,
        max_messages: int = MAX_MESSAGES,
    ) -> None:
        self._namespace = namespace
        self._redis_url = redis_url
        self._ttl = ttl_seconds
        self._max = max_messages
        self._redis: Any = None
        self._local: OrderedDict[str, tuple[float, list[Message]]] = OrderedDict()
        self._waiters: dict[str, set[asyncio.Event]] = {}

    async def put(self, sender_id: str, message: Message) -> None:
        """Keep ``message`` for ``sender_id`` (the oldest go once there are too many)."""
        if self._redis_url:
            await self._put_in_redis(self._key(sender_id), message)
        else:
            now = time.monotonic()
            self._forget_expired(now)
            _, pending = self._local.pop(sender_id, (now, []))
            pending = [*pending, message][-self._max :]
            self._local[sender_id] = (now + self._ttl, pending)
            if len(self._local) > MAX_LOCAL_CONVERSATIONS:
                self._local.popitem(last=False)
        for event in self._waiters.get(sender_id, ()):
            event.set()

    async def take(self, sender_id: str) -> list[Message]:
        """The pending messages of ``sender_id``, oldest first, removed from the inbox."""
        if self._redis_url:
            return await self._take_from_redis(self._key(sender_id))
        self._forget_expired(time.monotonic())
        _, pending = self._local.pop(sender_id, (0.0, []))
        return pending

    async def wait(self, sender_id: str, timeout: float) -> list[Message]:
        """Like ``take``, but waits up to ``timeout`` seconds for a message; ``[]`` if none."""
        deadline = time.monotonic() + timeout
        event = asyncio.Event()
        self._waiters.setdefault(sender_id, set()).add(event)
        try:
            while True:
                # Cleared before looking, so a push made while we look still wakes us.
                event.clear()
                messages = await self.take(sender_id)
                remaining = deadline - time.monotonic()
                if messages or remaining <= 0:
                    return messages
                if self._redis_url:
                    remaining = min(remaining, REDIS_CHECK_SECONDS)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(event.wait(), remaining)
        finally:
            waiters = self._waiters.get(sender_id, set())
            waiters.discard(event)
            if not waiters:
                self._waiters.pop(sender_id, None)

    async def close(self) -> None:
        """Close the Redis connections, if any were opened."""
        if self._redis is not None:
            await self._redis.close()
            self._redis = None

    def _key(self, sender_id: str) -> str:
        return f"{self._namespace}:{sender_id}"

    def _client(self) -> Any:
        if self._redis is None:
            import redis.asyncio as redis  # type: ignore[import-untyped]

            self._redis = redis.Redis.from_url(
                self._redis_url,
                socket_timeout=REDIS_TIMEOUT_SECONDS,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            )
        return self._redis

    async def _put_in_redis(self, key: str, message: Message) -> None:
        from redis.exceptions import RedisError  # type: ignore[import-untyped]

        try:
            async with self._client().pipeline(transaction=True) as pipe:
                pipe.rpush(key, json.dumps(message))
                pipe.ltrim(key, -self._max, -1)
                pipe.expire(key, int(self._ttl))
                await pipe.execute()
        except (RedisError, OSError) as error:
            raise InboxUnavailable(
                f"Redis did not store the message ({type(error).__name__})"
            ) from error

    async def _take_from_redis(self, key: str) -> list[Message]:
        from redis.exceptions import RedisError

        try:
            # One transaction: a message pushed meanwhile is either taken now or kept.
            async with self._client().pipeline(transaction=True) as pipe:
                pipe.lrange(key, 0, -1)
                pipe.delete(key)
                raw, _ = await pipe.execute()
        except (RedisError, OSError) as error:
            raise InboxUnavailable(f"Redis did not answer ({type(error).__name__})") from error
        return [json.loads(item) for item in raw]

    def _forget_expired(self, now: float) -> None:
        # put() moves a conversation to the end, so the front is always the oldest.
        while self._local:
            oldest, (expires_at, _) = next(iter(self._local.items()))
            if expires_at > now:
                break
            self._local.pop(oldest)
