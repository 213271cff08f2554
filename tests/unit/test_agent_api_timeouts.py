"""Handoffs nobody claims in time go back to the bot, and their customers are told."""

from __future__ import annotations

import time
from datetime import timedelta

from connectors.agent_api import NOBODY_FREE, expire_unclaimed
from crm_bridge.gateway import ConversationRef
from crm_bridge.handoff import HandoffDesk, HandoffReason, HandoffView


async def test_unclaimed_handoffs_time_out_and_customers_hear_it(crm_url: str) -> None:
    desk = HandoffDesk(crm_url)
    waiting = desk.request(
        ConversationRef("tg-1", "telegram", time.time()), HandoffReason.CUSTOMER_REQUEST
    )
    taken = desk.request(
        ConversationRef("tg-2", "telegram", time.time()), HandoffReason.CUSTOMER_REQUEST
    )
    desk.claim(taken.id, "U1", "Dana")
    told: list[tuple[str, str]] = []

    async def push(handoff: HandoffView, text: str) -> bool:
        told.append((handoff.sender_id, text))
        return True

    assert await expire_unclaimed(desk, timedelta(minutes=15), push) == []
    expired = await expire_unclaimed(desk, timedelta(seconds=-1), push)
    assert [h.id for h in expired] == [waiting.id]
    assert told == [("tg-1", NOBODY_FREE)]
    assert desk.ownership("tg-1").owner == "bot" and desk.ownership("tg-2").owner == "agent"
