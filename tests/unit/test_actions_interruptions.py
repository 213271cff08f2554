"""The actions that keep forms honest, and the inbound step's replies (real rasa-sdk
Trackers and dispatcher, real SQLite CRM)."""

from __future__ import annotations

from typing import Any

import pytest
from rasa_sdk.executor import CollectingDispatcher

from actions.core_fallback import ActionCoreFallback
from actions.handoff import recent_messages
from actions.inbound import ActionReplyTooLong, customer_text
from actions.interruption import ActionAnswerInterruption
from actions.other_language import REPLIES, ActionReplyOtherLanguage
from actions.returns import ActionSubmitReturn, ValidateReturnForm
from actions.switch_flow import ActionSwitchFlow
from bot.flows import FORM_OWN_SLOTS
from tests.unit.conftest import make_tracker, slot_events, texts


def inbound_tracker(intent: str, **inbound: Any) -> Any:
    tracker = make_tracker(text=f"/{intent}", intent=intent, active_loop="return_form")
    tracker.latest_message["metadata"] = {"inbound": inbound}
    tracker.events[-1]["metadata"] = {"inbound": inbound}
    return tracker


def test_switching_flows_leaves_the_form_and_its_answers(domain, dispatcher) -> None:
    tracker = make_tracker(
        text="I want to change my email to new@example.org",
        intent="update_contact",
        active_loop="return_form",
        prior_slots={"requested_slot": "return_reason", "return_item": "Rain Jacket"},
    )
    events = ActionSwitchFlow().run(dispatcher, tracker, domain)
    assert {"event": "active_loop", "name": None} in [
        {"event": e["event"], "name": e.get("name")} for e in events if e["event"] == "active_loop"
    ]
    slots = slot_events(events)
    assert slots["requested_slot"] is None
    assert all(slots[slot] is None for slot in FORM_OWN_SLOTS["return_form"])
    assert "order_number" not in slots  # the verified order carries over
    assert texts(dispatcher) == ["utter_switch_flow"]


def test_switching_with_another_order_number_forgets_the_email(domain, dispatcher) -> None:
    tracker = make_tracker(
        text="cancel order 10003",
        intent="cancel_order",
        active_loop="order_status_form",
        entities=[{"entity": "order_number", "value": "10003"}],
    )
    assert slot_events(ActionSwitchFlow().run(dispatcher, tracker, domain))["email"] is None


@pytest.mark.parametrize(
    ("intent", "reply"),
    [
        ("greet", "utter_greet_in_flow"),
        ("thank", "utter_welcome_in_flow"),
        ("bot_challenge", "utter_iamabot"),
        ("out_of_scope", "utter_out_of_scope_in_flow"),
        ("inbound_unclear", "utter_inbound_unclear"),
        ("affirm", "utter_need_answer"),
        ("deny", "utter_need_answer"),
        ("inform", "utter_need_answer"),
        ("start_return", "utter_on_it"),
    ],
)
def test_an_interruption_gets_its_answer_and_the_form_stays(
    domain, dispatcher, intent: str, reply: str
) -> None:
    tracker = make_tracker(text="...", intent=intent, active_loop="return_form")
    assert ActionAnswerInterruption().run(dispatcher, tracker, domain) == []
    assert texts(dispatcher) == [reply]


def test_another_flow_asked_without_confidence_is_offered(domain, dispatcher) -> None:
    tracker = make_tracker(text="cancel?", intent="cancel_order", active_loop="return_form")
    ActionAnswerInterruption().run(dispatcher, tracker, domain)
    [message] = dispatcher.messages
    assert "cancel an order" in message["text"]
    assert message["buttons"] == [{"title": "Cancel an order", "payload": "/cancel_order"}]


def test_goodbye_inside_a_form_ends_it(domain, dispatcher) -> None:
    tracker = make_tracker(text="bye", intent="goodbye", active_loop="complaint_form")
    events = ActionAnswerInterruption().run(dispatcher, tracker, domain)
    assert texts(dispatcher) == ["utter_goodbye"]
    assert any(e["event"] == "active_loop" and e.get("name") is None for e in events)
    assert slot_events(events)["complaint_text"] is None


def test_a_too_long_message_gets_the_limit_from_the_metadata(domain, dispatcher) -> None:
    ActionReplyTooLong().run(dispatcher, inbound_tracker("inbound_too_long", max_chars=500), domain)
    assert "500 characters" in texts(dispatcher)[0]
    default = CollectingDispatcher()
    ActionReplyTooLong().run(default, inbound_tracker("inbound_too_long"), domain)
    assert "4096 characters" in texts(default)[0]
    in_form = CollectingDispatcher()
    tracker = inbound_tracker("inbound_too_long", max_chars=300)
    ActionAnswerInterruption().run(in_form, tracker, domain)
    assert "300 characters" in texts(in_form)[0]


@pytest.mark.parametrize("language", ["nl", "de", "fr", "es", "it", "pt", "xx", None])
def test_another_language_is_answered_in_it_with_a_person_on_offer(
    domain, dispatcher, language: str | None
) -> None:
    tracker = inbound_tracker("inbound_other_language", language=language)
    ActionReplyOtherLanguage().run(dispatcher, tracker, domain)
    [message] = dispatcher.messages
    text, human, english = REPLIES[language if language in REPLIES else "en"]
    assert message["text"] == text
    assert message["buttons"] == [
        {"title": human, "payload": "/request_human"},
        {"title": english, "payload": "/greet"},
    ]


def test_the_agent_sees_the_customers_words_not_the_shortcut() -> None:
    tracker = inbound_tracker("inbound_unclear", text="???", verdict="unclear")
    assert customer_text(tracker.latest_message) == "???"
    assert customer_text({"text": "hello"}) == "hello"
    assert recent_messages(tracker)[-1] == ("Customer", "???")


def test_the_core_fallback_always_says_something_once(domain, dispatcher) -> None:
    ActionCoreFallback().run(dispatcher, make_tracker(text="hm", intent="inform"), domain)
    assert texts(dispatcher) == ["utter_ask_rephrase"]
    answered = make_tracker(text="hi", intent="greet")
    answered.events.append({"event": "bot", "text": "Hi!"})
    quiet = CollectingDispatcher()
    ActionCoreFallback().run(quiet, answered, domain)
    assert texts(quiet) == []


def test_a_refused_return_ends_the_flow_at_once(actions_crm, domain, dispatcher) -> None:
    # demo-alice is linked; her order 10001 has shipped but is not delivered yet.
    tracker = make_tracker(
        text="10001",
        intent="inform",
        active_loop="return_form",
        slots={"order_number": "10001"},
        prior_slots={"requested_slot": "order_number"},
    )
    result = ValidateReturnForm().validate_order_number("10001", dispatcher, tracker, domain)
    assert result["requested_slot"] is None and result["order_number"] is None
    assert "hasn't been delivered yet" in texts(dispatcher)[0]
    submit = CollectingDispatcher()
    ended = make_tracker(intent="inform", prior_slots={"order_number": None})
    ActionSubmitReturn().run(submit, ended, domain)
    assert texts(submit) == []  # the refusal was said; nothing more


async def test_the_ended_form_asks_nothing_more(actions_crm, domain, dispatcher) -> None:
    tracker = make_tracker(
        text="10001",
        intent="inform",
        active_loop="return_form",
        slots={"order_number": "10001"},
        prior_slots={"requested_slot": "order_number"},
    )
    events = await ValidateReturnForm().run(dispatcher, tracker, domain)
    requested = [e["value"] for e in events if e.get("name") == "requested_slot"]
    assert requested == [None]
