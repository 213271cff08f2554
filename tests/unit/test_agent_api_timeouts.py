"""Handoffs nobody claims in time go back to the bot, and their customers are told."""

from __future__ import annotations

import time
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

from bot.handoff_service import NOBODY_FREE, HandoffService
from crm_bridge.gateway import ConversationRef
from crm_bridge.handoff import HandoffDesk, HandoffReason


class RecordingTelegram:
    """A customer channel that records what is pushed to its customers."""

    def __init__(self) -> None:
        self.told: list[tuple[str, str]] = []

    @staticmethod
    def name() -> str:
        return "telegram"

    async def push(self, sender_id: str, text: str, buttons: Any = None) -> None:
        self.told.append((sender_id, text))


async def test_unclaimed_handoffs_time_out_and_customers_hear_it(crm_url: str, monkeypatch) -> None:
    monkeypatch.setenv("CRM_DATABASE_URL", crm_url)
    monkeypatch.delenv("SLACK_AGENT_CHANNEL", raising=False)
    desk = HandoffDesk(crm_url)
    waiting = desk.request(
        ConversationRef("tg-1", "telegram", time.time()), HandoffReason.CUSTOMER_REQUEST
    )
    taken = desk.request(
        ConversationRef("tg-2", "telegram", time.time()), HandoffReason.CUSTOMER_REQUEST
    )
    desk.claim(taken.id, "U1", "Dana")
    telegram = RecordingTelegram()
    app = SimpleNamespace(ctx=SimpleNamespace(input_channels=[telegram]))
    service = HandoffService(lambda: app)

    assert await service.expire_unclaimed(timedelta(minutes=15)) == []
    expired = await service.expire_unclaimed(timedelta(seconds=-1))
    assert [h.id for h in expired] == [waiting.id]
    assert telegram.told == [("tg-1", NOBODY_FREE)]
    assert desk.ownership("tg-1").owner == "bot" and desk.ownership("tg-2").owner == "agent"
    assert desk.get(waiting.id).outcome == "timed_out"
