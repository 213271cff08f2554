"""With Redis, a web chat message pushed by one Rasa instance is delivered by another."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from bot.web_inbox import REDIS_CHECK_SECONDS, InboxUnavailable, WebInbox

pytestmark = pytest.mark.integration

REDIS_URL = "redis://127.0.0.1:6379/9"


@pytest.fixture
async def namespace() -> AsyncIterator[str]:
    name = f"rapport:test:inbox:{uuid.uuid4().hex[:8]}"
    yield name
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    keys = [key async for key in client.scan_iter(f"{name}:*")]
    if keys:
        await client.delete(*keys)
    await client.close()


async def test_one_instance_stores_another_delivers_once(namespace: str) -> None:
    first, second = WebInbox(REDIS_URL, namespace), WebInbox(REDIS_URL, namespace)
    try:
        await first.put("web-a", {"text": "Hi, Dana here.", "agent": True})
        await first.put("web-a", {"text": "Rate us", "buttons": [{"title": "5", "payload": "/x"}]})
        await first.put("web-b", {"text": "someone else"})

        assert await second.take("web-a") == [
            {"text": "Hi, Dana here.", "agent": True},
            {"text": "Rate us", "buttons": [{"title": "5", "payload": "/x"}]},
        ]
        assert await first.take("web-a") == []
        assert await second.take("web-b") == [{"text": "someone else"}]
    finally:
        await first.close()
        await second.close()


async def test_the_list_expires_and_is_capped(namespace: str) -> None:
    inbox = WebInbox(REDIS_URL, namespace, ttl_seconds=3600, max_messages=3)
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    try:
        for n in range(5):
            await inbox.put("web-a", {"text": str(n)})
        assert 0 < await client.ttl(f"{namespace}:web-a") <= 3600
        assert [m["text"] for m in await inbox.take("web-a")] == ["2", "3", "4"]
    finally:
        await inbox.close()
        await client.close()


async def test_a_page_waiting_on_one_instance_gets_a_push_made_on_another(namespace: str) -> None:
    waiting_side, pushing_side = WebInbox(REDIS_URL, namespace), WebInbox(REDIS_URL, namespace)
    try:
        started = time.monotonic()
        waiting = asyncio.create_task(waiting_side.wait("web-a", timeout=10))
        await asyncio.sleep(0.2)
        await pushing_side.put("web-a", {"text": "from the other instance"})
        assert await waiting == [{"text": "from the other instance"}]
        assert time.monotonic() - started < REDIS_CHECK_SECONDS + 1.5
        assert await waiting_side.wait("web-a", timeout=0.3) == []
    finally:
        await waiting_side.close()
        await pushing_side.close()


async def test_an_unreachable_redis_is_reported_not_hung_on() -> None:
    inbox = WebInbox("redis://127.0.0.1:1/0", "rapport:test:inbox")
    started = time.monotonic()
    with pytest.raises(InboxUnavailable):
        await inbox.put("web-a", {"text": "lost"})
    with pytest.raises(InboxUnavailable):
        await inbox.take("web-a")
    assert time.monotonic() - started < 10
    await inbox.close()
