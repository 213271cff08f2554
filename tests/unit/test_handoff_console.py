"""Starting a handoff from the actions: the agents' Slack channel gets a summary and a
Claim button (at a stand-in Slack Web API on 127.0.0.1), customer messages are relayed
into its thread, and business hours and failures change what the customer is told."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from actions.crm import reset_gateway
from actions.handoff import ActionHandoffToHuman, ActionRelayToAgent, tell_crm_failure
from crm_bridge.errors import CrmUnavailable, HandoffConflict
from crm_bridge.handoff import HandoffDesk
from tests.fakes.slack_api import FakeSlackApi
from tests.unit.conftest import make_tracker, texts

AGENTS = "CAGENTS01"
HISTORY = [
    {
        "event": "user",
        "timestamp": 1_700_000_001.0,
        "text": "where is my order 10001?",
        "input_channel": "telegram",
        "parse_data": {
            "intent": {"name": "order_status"},
            "entities": [{"entity": "order_number", "value": "10001"}],
        },
    },
    {"event": "bot", "timestamp": 1_700_000_002.0, "text": "Order 10001 is on its way."},
    {"event": "bot", "timestamp": 1_700_000_003.0, "text": "Your return R-000001 is registered."},
]


@pytest.fixture
def fake_slack() -> Iterator[FakeSlackApi]:
    api = FakeSlackApi().start()
    yield api
    api.stop()


@pytest.fixture
def agents_channel(
    actions_crm: str, fake_slack: FakeSlackApi, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeSlackApi]:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
    monkeypatch.setenv("SLACK_AGENT_CHANNEL", AGENTS)
    monkeypatch.setenv("SLACK_API_BASE_URL", fake_slack.base_url)
    reset_gateway()
    yield fake_slack
    reset_gateway()


def ask_for_a_person(sender: str, dispatcher) -> None:
    tracker = make_tracker(
        sender=sender,
        text="I want a human",
        intent="request_human",
        earlier_events=HISTORY,
        channel="telegram",
    )
    assert ActionHandoffToHuman().run(dispatcher, tracker, {}) == []


def test_the_agents_channel_gets_a_summary_and_the_thread_relays(
    agents_channel: FakeSlackApi, actions_crm: str, dispatcher
) -> None:
    ask_for_a_person("tg-42", dispatcher)
    assert "number 1 in the queue" in texts(dispatcher)[0]
    [post] = agents_channel.calls_to("chat.postMessage", channel=AGENTS)
    shown = json.dumps(post.params["blocks"])
    for expected in (
        "telegram",
        "order_status",
        "request_human",
        "10001",
        "R-000001",
        "where is my order 10001?",
        "the customer asked for a person",
        "T-",
    ):
        assert expected in shown, expected
    handoff = HandoffDesk(actions_crm).ownership("tg-42").handoff
    assert handoff is not None and handoff.console_channel == AGENTS
    [claim] = post.params["blocks"][-1]["elements"]
    assert claim["action_id"] == "rapport_handoff_claim" and claim["value"] == str(handoff.id)
    assert handoff.console_thread and float(handoff.console_thread) > 0

    # Not yet claimed: nothing is relayed. Claimed: each message goes to the thread.
    relay = ActionRelayToAgent()
    HandoffDesk(actions_crm).claim(handoff.id, "U1", "Dana")
    for text in ("are you there?", "/restart"):
        tracker = make_tracker(sender="tg-42", text=text, channel="telegram")
        assert relay.run(dispatcher, tracker, {}) == []
    relayed = agents_channel.calls_to("chat.postMessage", thread_ts=handoff.console_thread)
    assert [call.params["text"] for call in relayed] == [
        ":speech_balloon: *Customer:* are you there?",
        ":speech_balloon: *Customer:* /restart",
    ]


def test_slack_being_down_does_not_stop_the_handoff(
    actions_crm: str, monkeypatch: pytest.MonkeyPatch, dispatcher
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
    monkeypatch.setenv("SLACK_AGENT_CHANNEL", AGENTS)
    monkeypatch.setenv("SLACK_API_BASE_URL", "http://127.0.0.1:9/api/")  # nothing listens
    reset_gateway()
    ask_for_a_person("tg-43", dispatcher)
    assert "number 1 in the queue" in texts(dispatcher)[0]
    handoff = HandoffDesk(actions_crm).ownership("tg-43").handoff
    assert handoff is not None and handoff.console_thread is None


def test_outside_business_hours_the_customer_gets_a_ticket_and_the_next_opening(
    agents_channel: FakeSlackApi, actions_crm: str, monkeypatch: pytest.MonkeyPatch, dispatcher
) -> None:
    tomorrow = (datetime.now(timezone.utc) + timedelta(days=1)).strftime("%a").lower()
    monkeypatch.setenv("BUSINESS_HOURS", f"{tomorrow} 00:00-24:00")
    reset_gateway()
    ask_for_a_person("tg-44", dispatcher)
    [said] = texts(dispatcher)
    assert "offline right now" in said and "reference T-" in said and "from " in said
    assert HandoffDesk(actions_crm).ownership("tg-44").owner == "bot"
    assert agents_channel.calls_to("chat.postMessage", channel=AGENTS) == []


def test_an_unreachable_system_hands_the_conversation_to_a_person(
    actions_crm: str, dispatcher
) -> None:
    tracker = make_tracker(sender="tg-45", text="cancel order 10001", intent="cancel_order")
    tell_crm_failure(dispatcher, CrmUnavailable("orders backend down"), tracker)
    [said] = texts(dispatcher)
    assert said.startswith("Sorry, I can't reach our customer records") and "queue" in said
    assert "backend" not in said
    handoff = HandoffDesk(actions_crm).ownership("tg-45").handoff
    assert handoff is not None and handoff.reason == "action_failed"


def test_an_agent_takes_over_a_conversation_on_their_own_initiative(
    actions_crm: str, dispatcher
) -> None:
    ask_for_a_person("tg-46", dispatcher)
    desk = HandoffDesk(actions_crm)
    queued = desk.ownership("tg-46").handoff
    assert queued is not None
    taken = desk.take_over(queued.interaction_id, "U7", "Sam")
    assert (taken.id, taken.state, taken.agent_id) == (queued.id, "agent", "U7")
    with pytest.raises(HandoffConflict):
        desk.take_over(queued.interaction_id, "U8", "Kim")
    assert [h.id for h in desk.held_by("U7")] == [queued.id]


def test_taking_over_a_conversation_the_bot_holds_starts_a_handoff(
    actions_crm: str, dispatcher
) -> None:
    from crm_bridge.handoff import HandbackOutcome

    ask_for_a_person("tg-47", dispatcher)
    desk = HandoffDesk(actions_crm)
    queued = desk.ownership("tg-47").handoff
    assert queued is not None
    first = desk.take_over(queued.interaction_id, "U7", "Sam")
    desk.hand_back(first.id, "U7", HandbackOutcome.RESOLVED)
    again = desk.take_over(first.interaction_id, "U9", "Lee")
    assert again.id != first.id and again.reason == "agent_initiative"
    assert desk.ownership(again.sender_id).owner == "agent"


def test_the_customer_hears_roughly_how_long_the_wait_is(actions_crm: str, dispatcher) -> None:
    from datetime import datetime, timedelta, timezone

    from sqlalchemy import update

    from crm_bridge import models
    from crm_bridge.db import session_factory

    ask_for_a_person("tg-48", dispatcher)
    desk = HandoffDesk(actions_crm)
    earlier = desk.ownership("tg-48").handoff
    assert earlier is not None and desk.typical_wait() is None
    desk.claim(earlier.id, "U1", "Dana")
    with session_factory(actions_crm)() as session, session.begin():
        session.execute(
            update(models.Handoff)
            .where(models.Handoff.id == earlier.id)
            .values(requested_at=datetime.now(timezone.utc) - timedelta(minutes=6))
        )
    assert round(desk.typical_wait().total_seconds() / 60) == 6
    later = type(dispatcher)()
    ask_for_a_person("tg-49", later)
    assert "number 1 in the queue. The wait is usually about 6 minutes." in texts(later)[0]


def test_outside_business_hours_nothing_is_promised_when_no_ticket_can_be_opened(
    actions_crm: str, monkeypatch: pytest.MonkeyPatch, dispatcher
) -> None:
    from actions.crm import get_gateway, get_handoff_desk

    tomorrow = (datetime.now(timezone.utc) + timedelta(days=1)).strftime("%a").lower()
    monkeypatch.setenv("BUSINESS_HOURS", f"{tomorrow} 00:00-24:00")
    reset_gateway()
    get_handoff_desk()  # the handoff desk keeps the working database...
    monkeypatch.setenv("CRM_DATABASE_URL", "sqlite:////nonexistent/dir/crm.db")
    get_gateway.cache_clear()  # ...while the CRM records are unreachable
    tracker = make_tracker(sender="tg-50", text="cancel order 10001", intent="cancel_order")
    tell_crm_failure(dispatcher, CrmUnavailable("orders backend down"), tracker)
    assert texts(dispatcher) == ["utter_crm_unavailable"]
    assert HandoffDesk(actions_crm).ownership("tg-50").owner == "bot"
