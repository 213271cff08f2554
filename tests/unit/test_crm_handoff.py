"""Ownership of conversations (bot / queued / agent) in the CRM; re-run on PostgreSQL by
tests/integration/test_crm_handoff_postgres.py."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from crm_bridge.errors import HandoffConflict, HandoffNotFound, InvalidInput
from crm_bridge.gateway import ConversationRef
from crm_bridge.handoff import HandbackOutcome, HandoffDesk, HandoffReason


@pytest.fixture
def desk_url(crm_url: str) -> str:
    return crm_url


@pytest.fixture
def desk(desk_url: str) -> HandoffDesk:
    return HandoffDesk(desk_url)


def ask(desk: HandoffDesk, sender: str) -> int:
    ref = ConversationRef(sender, "telegram", time.time())
    return desk.request(ref, HandoffReason.CUSTOMER_REQUEST).id


def test_a_conversation_belongs_to_the_bot_until_handed_off(desk: HandoffDesk) -> None:
    assert desk.ownership("tg-1").owner == "bot"
    handoff_id = ask(desk, "tg-1")
    assert ask(desk, "tg-1") == handoff_id  # asking again changes nothing
    assert desk.ownership("tg-1").owner == "queued"
    claimed = desk.claim(handoff_id, "U42", "Dana")
    assert (claimed.state, claimed.agent_name) == ("agent", "Dana")
    assert desk.ownership("tg-1").owner == "agent"
    back = desk.hand_back(handoff_id, "U42", HandbackOutcome.RESOLVED)
    assert (back.state, back.outcome) == ("closed", "resolved")
    assert back.claimed_at is not None and back.handed_back_at is not None
    assert desk.ownership("tg-1").owner == "bot"
    assert ask(desk, "tg-1") != handoff_id  # a later request is a new handoff


def test_two_agents_clicking_at_once_one_wins(desk: HandoffDesk) -> None:
    handoff_id = ask(desk, "tg-2")

    def try_claim(agent: str) -> str:
        try:
            desk.claim(handoff_id, agent, agent)
            return agent
        except HandoffConflict:
            return "lost"

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(try_claim, [f"U{i}" for i in range(8)]))
    winners = [r for r in results if r != "lost"]
    assert len(winners) == 1
    assert desk.ownership("tg-2").handoff.agent_id == winners[0]  # type: ignore[union-attr]


def test_only_the_owning_agent_hands_back(desk: HandoffDesk) -> None:
    handoff_id = ask(desk, "tg-3")
    with pytest.raises(HandoffConflict):
        desk.hand_back(handoff_id, "U1", HandbackOutcome.RESOLVED)  # not claimed yet
    desk.claim(handoff_id, "U1", "Ana")
    with pytest.raises(HandoffConflict):
        desk.hand_back(handoff_id, "U2", HandbackOutcome.RESOLVED)
    with pytest.raises(InvalidInput):
        desk.claim(ask(desk, "tg-4"), " ", "")


def test_queue_positions_and_timeouts(desk: HandoffDesk) -> None:
    first, second = ask(desk, "tg-5"), ask(desk, "tg-6")
    assert (desk.queue_position(first), desk.queue_position(second)) == (1, 2)
    assert [h.id for h in desk.list(("queued",))] == [first, second]
    assert desk.expire_unclaimed(timedelta(minutes=5)) == []
    expired = desk.expire_unclaimed(timedelta(seconds=-1))
    assert {h.id for h in expired} == {first, second}
    assert all(h.outcome == "timed_out" for h in expired)
    assert desk.queue_position(first) == 0 and desk.ownership("tg-5").owner == "bot"


def test_csat_is_stored_and_validated(desk: HandoffDesk, desk_url: str) -> None:
    from sqlalchemy import select

    from crm_bridge import models
    from crm_bridge.db import session_factory

    handoff_id = ask(desk, "tg-7")
    for bad in (0, 6, "5"):
        with pytest.raises(InvalidInput):
            desk.record_csat(handoff_id, bad)  # type: ignore[arg-type]
    assert desk.record_csat(handoff_id, 4).csat == 4
    with session_factory(desk_url)() as session:
        interaction = session.execute(
            select(models.Interaction).where(models.Interaction.sender_id == "tg-7")
        ).scalar_one()
        assert interaction.csat == 4


def test_an_unknown_handoff_is_not_found_not_a_conflict(desk: HandoffDesk) -> None:
    for attempt in (
        lambda: desk.claim(987654, "U1", "Ana"),
        lambda: desk.get(987654),
        lambda: desk.hand_back(987654, "U1", HandbackOutcome.RESOLVED),
        lambda: desk.take_over(987654, "U1", "Ana"),
    ):
        with pytest.raises(HandoffNotFound):
            attempt()
    # A real conflict stays one.
    handoff_id = ask(desk, "tg-nf")
    desk.claim(handoff_id, "U1", "Ana")
    with pytest.raises(HandoffConflict):
        desk.claim(handoff_id, "U2", "Eli")
