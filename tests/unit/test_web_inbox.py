"""The web chat inbox in memory: what an agent pushes waits until the page takes it."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from types import SimpleNamespace

from bot import settings as bot_settings
from bot.handoff_service import push_to_customer
from bot.web_inbox import WebInbox
from connectors.rest import RestChannel
from connectors.web import WebChatChannel
from crm_bridge.handoff import HandoffView


async def test_messages_wait_per_conversation_and_are_taken_once() -> None:
    inbox = WebInbox()
    await inbox.put("web-a", {"text": "Hi, Dana here."})
    await inbox.put("web-b", {"text": "For someone else"})
    await inbox.put("web-a", {"text": "Rate us", "buttons": [{"title": "5", "payload": "/x"}]})

    assert await inbox.take("web-a") == [
        {"text": "Hi, Dana here."},
        {"text": "Rate us", "buttons": [{"title": "5", "payload": "/x"}]},
    ]
    assert await inbox.take("web-a") == []
    assert await inbox.take("web-b") == [{"text": "For someone else"}]


async def test_only_the_newest_messages_are_kept() -> None:
    inbox = WebInbox(max_messages=3)
    for n in range(5):
        await inbox.put("web-a", {"text": str(n)})
    assert [m["text"] for m in await inbox.take("web-a")] == ["2", "3", "4"]


async def test_messages_expire() -> None:
    inbox = WebInbox(ttl_seconds=0.05)
    await inbox.put("web-a", {"text": "too late"})
    await asyncio.sleep(0.1)
    assert await inbox.take("web-a") == []


async def test_a_waiting_page_gets_a_push_at_once() -> None:
    inbox = WebInbox()
    started = time.monotonic()
    waiting = asyncio.create_task(inbox.wait("web-a", timeout=10))
    await asyncio.sleep(0.05)
    await inbox.put("web-b", {"text": "not yours"})
    await inbox.put("web-a", {"text": "yours"})
    assert await waiting == [{"text": "yours"}]
    assert time.monotonic() - started < 1
    assert await inbox.take("web-b") == [{"text": "not yours"}]


async def test_waiting_ends_empty_after_the_timeout_or_at_once_with_pending() -> None:
    inbox = WebInbox()
    started = time.monotonic()
    assert await inbox.wait("web-a", timeout=0.2) == []
    assert 0.2 <= time.monotonic() - started < 1
    await inbox.put("web-a", {"text": "already here"})
    assert await inbox.wait("web-a", timeout=10) == [{"text": "already here"}]


async def test_the_web_channel_pushes_in_the_webhook_reply_shape(monkeypatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    channel = WebChatChannel()
    await channel.push("web-a", "I'm checking order 10001 now.")
    await channel.push("web-a", "How would you rate us?", [{"title": "5", "payload": "/csat"}])
    assert await channel.inbox.take("web-a") == [
        {"text": "I'm checking order 10001 now.", "agent": True},
        {
            "text": "How would you rate us?",
            "agent": True,
            "buttons": [{"title": "5", "payload": "/csat"}],
        },
    ]


def _handoff(sender_id: str) -> HandoffView:
    now = datetime.now(timezone.utc)
    return HandoffView(
        1, sender_id, "web", 1, "customer_request", "held", now, now, None, "U1", "Dana", None, None
    )


async def test_the_agent_api_delivers_to_the_web_inbox_or_says_it_could_not(monkeypatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    web = WebChatChannel()
    app = SimpleNamespace(ctx=SimpleNamespace(input_channels=[RestChannel(), web]))
    assert await push_to_customer(app, _handoff("web-a"), "Hi, Dana here.") is True
    assert await web.inbox.take("web-a") == [{"text": "Hi, Dana here.", "agent": True}]

    # Redis down: the agent hears "not delivered" instead of an error.
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    bot_settings.current.cache_clear()  # settings are read once per process
    unreachable = SimpleNamespace(ctx=SimpleNamespace(input_channels=[WebChatChannel()]))
    assert await push_to_customer(unreachable, _handoff("web-a"), "lost") is False
