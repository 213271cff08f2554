"""Returns, complaints, contact updates, the human request and the fallback."""

from __future__ import annotations

import pytest
from rasa_sdk.events import UserUtteranceReverted
from sqlalchemy import select

from actions.complaint import ActionFileComplaint
from actions.contact_update import ActionUpdateContact, ValidateContactUpdateForm
from actions.crm import get_gateway
from actions.fallback import ActionHandleFallback
from actions.handoff import ActionHandoffToHuman
from actions.returns import ActionSubmitReturn, ValidateReturnForm, matching_item
from crm_bridge import models
from crm_bridge.db import session_factory
from tests.unit.conftest import make_tracker, slot_events, texts

pytestmark = pytest.mark.usefixtures("actions_crm")


def rows(url: str, model: type) -> list:
    with session_factory(url)() as session:
        found = list(session.execute(select(model)).scalars())
        for row in found:
            _ = row.interaction
        return found


async def test_the_return_item_is_matched_to_the_order(domain, dispatcher) -> None:
    tracker = make_tracker(
        sender="demo-alice",
        slots={"return_item": "the jacket"},
        prior_slots={"order_number": "10002"},
        active_loop="return_form",
    )
    events = await ValidateReturnForm().run(dispatcher, tracker, domain)
    assert slot_events(events)["return_item"] == "Rain Jacket"


async def test_an_item_not_on_the_order_is_offered_as_buttons(domain, dispatcher) -> None:
    tracker = make_tracker(
        sender="demo-alice",
        slots={"return_item": "a canoe"},
        prior_slots={"order_number": "10002"},
        active_loop="return_form",
    )
    events = await ValidateReturnForm().run(dispatcher, tracker, domain)
    assert slot_events(events)["return_item"] is None
    assert [b["title"] for b in dispatcher.messages[0]["buttons"]] == ["Rain Jacket"]


def test_a_return_is_created_with_a_reference(actions_crm, domain, dispatcher) -> None:
    tracker = make_tracker(
        sender="demo-alice",
        slots={"order_number": "10002", "return_item": "Rain Jacket", "return_reason": "too small"},
    )
    events = ActionSubmitReturn().run(dispatcher, tracker, domain)
    [created] = rows(actions_crm, models.ReturnRequest)
    assert created.reference in texts(dispatcher)[0] and created.reason == "too small"
    assert created.interaction is not None and created.interaction.sender_id == "demo-alice"
    assert slot_events(events)["interaction_outcome"] == "ticket_created"
    assert slot_events(events)["return_item"] is None


def test_an_old_order_is_past_the_return_window(actions_crm, domain, dispatcher) -> None:
    tracker = make_tracker(
        sender="demo-bob",
        slots={"order_number": "10004", "return_item": "Camping Stove", "return_reason": "meh"},
    )
    ActionSubmitReturn().run(dispatcher, tracker, domain)
    assert "past our return window" in texts(dispatcher)[0]
    assert rows(actions_crm, models.ReturnRequest) == []


def test_matching_items_needs_one_clear_match() -> None:
    from datetime import datetime, timezone

    from crm_bridge.gateway import OrderItemView, OrderView

    order = OrderView(
        "10001",
        1,
        "delivered",
        datetime.now(timezone.utc),
        None,
        None,
        None,
        (OrderItemView("A", "Trail Running Shoes", 1, 1), OrderItemView("B", "Merino Socks", 2, 1)),
    )
    assert matching_item(order, "merino socks") == "Merino Socks"
    assert matching_item(order, "the running shoes please") == "Trail Running Shoes"
    assert matching_item(order, "") is None
    assert matching_item(order, "a hat") is None


def test_a_complaint_becomes_a_ticket(actions_crm, domain, dispatcher) -> None:
    tracker = make_tracker(
        sender="web-anon", slots={"complaint_text": "Courier threw my parcel 😡\nIt broke."}
    )
    events = ActionFileComplaint().run(dispatcher, tracker, domain)
    [ticket] = rows(actions_crm, models.Ticket)
    assert ticket.category == "complaint" and ticket.subject == "Courier threw my parcel 😡"
    assert ticket.contact_id is None and "It broke." in ticket.description
    assert ticket.reference in texts(dispatcher)[0] and "in this chat" in texts(dispatcher)[0]
    assert slot_events(events)["interaction_outcome"] == "ticket_created"


async def test_a_bad_new_email_is_asked_again(domain, dispatcher) -> None:
    tracker = make_tracker(
        sender="demo-bob",
        slots={"new_contact_value": "bob@nowhere"},
        active_loop="contact_update_form",
    )
    events = await ValidateContactUpdateForm().run(dispatcher, tracker, domain)
    assert slot_events(events)["new_contact_value"] is None
    assert "email address" in texts(dispatcher)[0]


async def test_a_linked_customer_is_asked_only_for_the_new_value(domain, dispatcher) -> None:
    tracker = make_tracker(sender="demo-bob", active_loop="contact_update_form")
    required = await ValidateContactUpdateForm().required_slots(
        ["order_number", "email", "new_contact_value"], dispatcher, tracker, domain
    )
    assert required == ["new_contact_value"]


def test_a_new_phone_number_is_stored(domain, dispatcher) -> None:
    tracker = make_tracker(sender="demo-bob", slots={"new_contact_value": "+44 7700 900999"})
    events = ActionUpdateContact().run(dispatcher, tracker, domain)
    bob = get_gateway().find_contact_by_identity("rest", "demo-bob")
    assert bob is not None and bob.phone == "+447700900999"
    assert texts(dispatcher) == ["Done: your phone number is now +447700900999."]
    assert slot_events(events)["interaction_outcome"] == "resolved_by_bot"


def test_an_unverified_customer_cannot_change_details(domain, dispatcher) -> None:
    tracker = make_tracker(sender="web-anon", slots={"new_contact_value": "x@example.com"})
    ActionUpdateContact().run(dispatcher, tracker, domain)
    assert "confirm who you are" in texts(dispatcher)[0]


def test_asking_for_a_person_opens_a_ticket(actions_crm, domain, dispatcher) -> None:
    tracker = make_tracker(
        sender="demo-alice",
        text="I want to talk to a human",
        intent="request_human",
        earlier_events=[
            {
                "event": "user",
                "timestamp": 1_700_000_001.0,
                "text": "my parcel is lost",
                "parse_data": {"intent": {"name": "delivery_problem"}},
                "input_channel": "rest",
            },
        ],
    )
    events = ActionHandoffToHuman().run(dispatcher, tracker, domain)
    [ticket] = rows(actions_crm, models.Ticket)
    assert ticket.category == "human_request" and ticket.contact_id is not None
    assert "my parcel is lost" in ticket.description
    assert "by email" in texts(dispatcher)[0] and "number 1 in the queue" in texts(dispatcher)[0]
    from crm_bridge.handoff import HandoffDesk

    ownership = HandoffDesk(actions_crm).ownership("demo-alice")
    assert ownership.owner == "queued" and ownership.handoff is not None
    assert ownership.handoff.reason == "customer_request"
    assert events == []
    # The Interaction's outcome follows from the handoff recorded on it.
    from crm_bridge.interaction_log import DialogueVocabulary, refresh_outcome_and_summary

    with session_factory(actions_crm)() as session:
        interaction = session.get(models.Interaction, ticket.interaction_id)
        refresh_outcome_and_summary(session, interaction, DialogueVocabulary())
        assert interaction.outcome == "handed_off"
        assert [h.id for h in interaction.handoffs] == [ownership.handoff.id]


def test_fallback_asks_to_rephrase_then_hands_off(actions_crm, domain, dispatcher) -> None:
    miss = {
        "event": "user",
        "timestamp": 1_700_000_001.0,
        "text": "blorp",
        "parse_data": {"intent": {"name": "nlu_fallback", "confidence": 0.3}},
    }
    first = make_tracker(text="wibble", intent="nlu_fallback")
    assert ActionHandleFallback().run(dispatcher, first, domain) == [UserUtteranceReverted()]
    assert texts(dispatcher) == ["utter_ask_rephrase"]

    second = make_tracker(text="wibble", intent="nlu_fallback", earlier_events=[miss])
    again = type(dispatcher)()
    assert ActionHandleFallback().run(again, second, domain) == [UserUtteranceReverted()]
    [said] = texts(again)
    assert said.startswith("Sorry, I'm still not sure") and "number 1 in the queue" in said
    from crm_bridge.handoff import HandoffDesk

    handoff = HandoffDesk(actions_crm).ownership("demo-alice").handoff
    assert handoff is not None and handoff.reason == "repeated_fallback"
    # A third miss in a row does not queue (or ticket) the conversation twice.
    third_miss = type(dispatcher)()
    ActionHandleFallback().run(
        third_miss,
        make_tracker(text="wibble", intent="nlu_fallback", earlier_events=[miss, miss]),
        domain,
    )
    assert "already with our team" in texts(third_miss)[0]
    assert len(rows(actions_crm, models.Ticket)) == 1

    understood_between = make_tracker(
        text="wibble",
        intent="nlu_fallback",
        earlier_events=[
            miss,
            {
                "event": "user",
                "timestamp": 1_700_000_002.0,
                "text": "hi",
                "parse_data": {"intent": {"name": "greet"}},
            },
        ],
    )
    third = type(dispatcher)()
    ActionHandleFallback().run(third, understood_between, domain)
    assert texts(third) == ["utter_ask_rephrase"]


def test_a_rating_is_stored_on_the_handed_back_conversation(
    actions_crm, domain, dispatcher
) -> None:
    import time as clock

    from actions.csat import ActionStoreCsat
    from crm_bridge.gateway import ConversationRef
    from crm_bridge.handoff import HandbackOutcome, HandoffDesk, HandoffReason

    desk = HandoffDesk(actions_crm)
    handoff = desk.request(
        ConversationRef("tg-5", "telegram", clock.time()), HandoffReason.CUSTOMER_REQUEST
    )
    desk.claim(handoff.id, "U1", "Dana")
    desk.hand_back(handoff.id, "U1", HandbackOutcome.RESOLVED)

    typed = make_tracker(sender="tg-5", text="I'd give it a 3 out of 5", intent="csat")
    ActionStoreCsat().run(dispatcher, typed, domain)
    assert desk.get(handoff.id).csat == 3
    pressed = make_tracker(
        sender="tg-5",
        text='/csat{"csat_score":"5"}',
        intent="csat",
        entities=[{"entity": "csat_score", "value": "5"}],
    )
    ActionStoreCsat().run(dispatcher, pressed, domain)
    assert desk.get(handoff.id).csat == 5
    unclear = type(dispatcher)()
    ActionStoreCsat().run(unclear, make_tracker(sender="tg-5", text="great", intent="csat"), domain)
    assert texts(unclear) == ["Please pick a score from 1 to 5."]
