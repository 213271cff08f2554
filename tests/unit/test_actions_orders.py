"""Order status, cancellation and delivery problems, with identity verification."""

from __future__ import annotations

from typing import Any

import pytest
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import select

from actions.cancel_order import ActionCancelOrder
from actions.crm import get_gateway, reset_gateway
from actions.delivery_problem import ActionReportDeliveryProblem
from actions.order_status import ActionCheckOrderStatus, ValidateOrderStatusForm
from crm_bridge import models
from crm_bridge.db import session_factory
from tests.unit.conftest import make_tracker, slot_events, texts

pytestmark = pytest.mark.usefixtures("actions_crm")


async def validate(
    slots: dict[str, Any], sender: str, domain: dict, dispatcher: CollectingDispatcher
) -> dict[str, Any]:
    tracker = make_tracker(
        sender=sender, text="x", intent="inform", slots=slots, active_loop="order_status_form"
    )
    return slot_events(await ValidateOrderStatusForm().run(dispatcher, tracker, domain))


def tickets(url: str) -> list[models.Ticket]:
    with session_factory(url)() as session:
        found = list(session.execute(select(models.Ticket)).scalars())
        for ticket in found:  # load what the tests read after the session closes
            _ = ticket.order, ticket.interaction
        return found


async def test_a_linked_customer_is_not_asked_for_an_email(domain, dispatcher) -> None:
    tracker = make_tracker(sender="demo-alice", active_loop="order_status_form")
    required = await ValidateOrderStatusForm().required_slots(
        ["order_number", "email"], dispatcher, tracker, domain
    )
    assert required == ["order_number"]
    unlinked = make_tracker(sender="web-stranger", active_loop="order_status_form")
    assert await ValidateOrderStatusForm().required_slots(
        ["order_number", "email"], dispatcher, unlinked, domain
    ) == ["order_number", "email"]


async def test_a_linked_customer_sees_their_order(domain, dispatcher) -> None:
    slots = await validate({"order_number": "10001"}, "demo-alice", domain, dispatcher)
    assert slots["order_number"] == "10001" and slots["requested_slot"] is None

    tracker = make_tracker(sender="demo-alice", slots={"order_number": "10001"})
    events = ActionCheckOrderStatus().run(dispatcher, tracker, domain)
    answer = texts(dispatcher)[0]
    assert "Order 10001 is on its way" in answer and "DPD-5521" in answer
    assert "Trail Running Shoes" in answer and "Expected delivery" in answer
    assert slot_events(events)["interaction_outcome"] == "resolved_by_bot"
    assert slot_events(events)["order_number"] is None


async def test_another_customers_order_is_answered_as_not_found(domain, dispatcher) -> None:
    slots = await validate({"order_number": "10003"}, "demo-alice", domain, dispatcher)
    assert slots["order_number"] is None
    assert texts(dispatcher) == [
        "I can't find an order 10003 on your account. Could you check the number?"
    ]
    nonexistent = CollectingDispatcher()
    await validate({"order_number": "99999"}, "demo-alice", domain, nonexistent)
    assert texts(nonexistent)[0].replace("99999", "10003") == texts(dispatcher)[0]


async def test_a_malformed_order_number_is_asked_again(domain, dispatcher) -> None:
    slots = await validate({"order_number": "12"}, "demo-alice", domain, dispatcher)
    assert slots["order_number"] is None
    assert "5 digits" in texts(dispatcher)[0]


async def test_an_unlinked_customer_proves_the_order_with_its_email(domain, dispatcher) -> None:
    slots = await validate(
        {"order_number": "10005", "email": "Chloe@Example.com"}, "web-chloe", domain, dispatcher
    )
    assert slots["email"] == "chloe@example.com" and slots["requested_slot"] is None
    linked = get_gateway().find_contact_by_identity("rest", "web-chloe")
    assert linked is not None and linked.name == "Chloé Dubois"

    tracker = make_tracker(sender="web-chloe", slots={"order_number": "10005"})
    ActionCheckOrderStatus().run(dispatcher, tracker, domain)
    assert any("UPS-1Z999" in text for text in texts(dispatcher))


async def test_a_wrong_email_links_nothing_and_reveals_nothing(domain, dispatcher) -> None:
    slots = await validate(
        {"order_number": "10001", "email": "bob@example.com"}, "web-guess", domain, dispatcher
    )
    assert slots["order_number"] is None and slots["email"] is None
    assert slots["verification_failures"] == 1
    assert "couldn't find an order with that number and email" in texts(dispatcher)[0]
    assert not any("DPD" in text for text in texts(dispatcher))
    assert get_gateway().find_contact_by_identity("rest", "web-guess") is None


async def test_three_failed_checks_offer_a_person(domain, dispatcher) -> None:
    tracker = make_tracker(
        sender="web-guess",
        slots={"order_number": "10001", "email": "x@example.com"},
        prior_slots={"verification_failures": 2},
        active_loop="order_status_form",
    )
    events = await ValidateOrderStatusForm().run(dispatcher, tracker, domain)
    assert slot_events(events)["verification_failures"] == 3
    assert "utter_offer_human" in texts(dispatcher)


def test_crm_down_gives_a_domain_answer(
    domain, dispatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRM_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:1/none")
    reset_gateway()
    tracker = make_tracker(sender="demo-alice", slots={"order_number": "10001"})
    events = ActionCheckOrderStatus().run(dispatcher, tracker, domain)
    assert texts(dispatcher) == ["utter_crm_unavailable"]
    assert "interaction_outcome" not in slot_events(events)


def test_cancelling_a_processing_order_opens_a_ticket(actions_crm, domain, dispatcher) -> None:
    tracker = make_tracker(sender="demo-bob", slots={"order_number": "10003"})
    events = ActionCancelOrder().run(dispatcher, tracker, domain)
    [ticket] = tickets(actions_crm)
    assert ticket.category == "cancellation" and ticket.order is not None
    assert ticket.reference in texts(dispatcher)[0]
    assert slot_events(events)["interaction_outcome"] == "ticket_created"


def test_a_shipped_order_cannot_be_cancelled(actions_crm, domain, dispatcher) -> None:
    tracker = make_tracker(sender="demo-alice", slots={"order_number": "10001"})
    ActionCancelOrder().run(dispatcher, tracker, domain)
    assert "can't be cancelled" in texts(dispatcher)[0]
    assert dispatcher.messages[0]["buttons"][0]["payload"] == "/start_return"
    assert tickets(actions_crm) == []


def test_a_damaged_delivery_opens_a_ticket(actions_crm, domain, dispatcher) -> None:
    tracker = make_tracker(
        sender="demo-alice", slots={"order_number": "10001", "delivery_issue": "damaged"}
    )
    events = ActionReportDeliveryProblem().run(dispatcher, tracker, domain)
    [ticket] = tickets(actions_crm)
    assert ticket.category == "delivery" and "damaged" in ticket.subject
    assert ticket.interaction is not None and ticket.interaction.sender_id == "demo-alice"
    assert slot_events(events)["interaction_outcome"] == "ticket_created"


def test_a_late_order_still_within_its_date_gets_the_date(actions_crm, domain, dispatcher) -> None:
    tracker = make_tracker(
        sender="demo-alice", slots={"order_number": "10001", "delivery_issue": "late"}
    )
    ActionReportDeliveryProblem().run(dispatcher, tracker, domain)
    assert "isn't late yet" in texts(dispatcher)[0]
    assert tickets(actions_crm) == []
