"""Delivery problems (delivery_problem_form -> action_report_delivery_problem)."""

from __future__ import annotations

from datetime import date
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.crm import get_gateway
from actions.formatting import day
from actions.handoff import tell_crm_failure
from actions.identity import conversation_ref
from actions.verification import (
    VerifiedOrderFormValidation,
    load_verified_order,
    reset_order_slots,
)
from crm_bridge.errors import RapportError
from crm_bridge.gateway import Outcome, TicketCategory

ISSUE_WORDS = {
    "late": "has not arrived yet",
    "damaged": "arrived damaged",
    "missing": "arrived with something missing",
    "wrong_item": "contained the wrong item",
}


class ValidateDeliveryProblemForm(VerifiedOrderFormValidation):
    def name(self) -> str:
        return "validate_delivery_problem_form"

    def validate_delivery_issue(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        """One of the offered options (the buttons)."""
        return {"delivery_issue": value if value in ISSUE_WORDS else None}


class ActionReportDeliveryProblem(Action):
    """Open a delivery ticket, unless a 'late' order is still within its delivery date."""

    def name(self) -> str:
        return "action_report_delivery_problem"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[dict[str, Any]]:
        issue = tracker.get_slot("delivery_issue")
        events = [*reset_order_slots(), SlotSet("delivery_issue", None)]
        found = load_verified_order(dispatcher, tracker)
        if found is None:
            return events
        contact, order = found
        expected = order.expected_delivery
        if (
            issue == "late"
            and order.status != "delivered"
            and expected
            and expected >= date.today()
        ):
            dispatcher.utter_message(
                text=f"Order {order.number} isn't late yet: it's due by {day(expected)}. "
                "If it hasn't arrived by then, tell me and I'll open a ticket right away."
            )
            return [*events, SlotSet("interaction_outcome", Outcome.RESOLVED_BY_BOT.value)]
        try:
            ticket = get_gateway().open_ticket(
                conversation_ref(tracker),
                TicketCategory.DELIVERY,
                f"Order {order.number} {ISSUE_WORDS.get(issue or '', 'has a delivery problem')}",
                f"Reported by the customer through the assistant (issue: {issue}).",
                contact_id=contact.id,
                order_number=order.number,
            )
        except RapportError as error:
            tell_crm_failure(dispatcher, error, tracker)
            return events
        dispatcher.utter_message(
            text=f"I'm sorry about that. I've opened ticket {ticket.reference} for order "
            f"{order.number}; our delivery team will email you within one working day."
        )
        return [*events, SlotSet("interaction_outcome", Outcome.TICKET_CREATED.value)]
