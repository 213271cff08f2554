"""Cancel an order (cancel_order_form -> action_cancel_order)."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.crm import get_gateway
from actions.handoff import tell_crm_failure
from actions.identity import conversation_ref
from actions.verification import (
    VerifiedOrderFormValidation,
    load_verified_order,
    reset_order_slots,
)
from crm_bridge.errors import RapportError
from crm_bridge.gateway import Outcome, TicketCategory


class ValidateCancelOrderForm(VerifiedOrderFormValidation):
    needs_proof = True

    def name(self) -> str:
        return "validate_cancel_order_form"


class ActionCancelOrder(Action):
    """Orders still in the warehouse get a cancellation ticket; others, a return instead."""

    def name(self) -> str:
        return "action_cancel_order"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[dict[str, Any]]:
        found = load_verified_order(dispatcher, tracker, proven=True)
        if found is None:
            return reset_order_slots()
        contact, order = found
        if order.status != "processing":
            dispatcher.utter_message(
                text=f"Order {order.number} has already left our warehouse, so it can't be "
                "cancelled any more. Once it arrives you can return it for free "
                "within 30 days.",
                buttons=[{"title": "Start a return", "payload": "/start_return"}],
            )
            return reset_order_slots()
        try:
            ticket = get_gateway().open_ticket(
                conversation_ref(tracker),
                TicketCategory.CANCELLATION,
                f"Cancel order {order.number}",
                "Customer asked the assistant to cancel the order before dispatch.",
                contact_id=contact.id,
                order_number=order.number,
            )
        except RapportError as error:
            tell_crm_failure(dispatcher, error, tracker)
            return reset_order_slots()
        dispatcher.utter_message(
            text=f"I've asked our team to cancel order {order.number} (reference "
            f"{ticket.reference}). You'll get a confirmation email, and any payment is "
            "refunded within 5 working days."
        )
        return [*reset_order_slots(), SlotSet("interaction_outcome", Outcome.TICKET_CREATED.value)]
