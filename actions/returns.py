"""Returns and refunds (return_form -> action_submit_return)."""

from __future__ import annotations

from datetime import date
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.crm import get_gateway
from actions.handoff import tell_crm_failure
from actions.identity import conversation_ref, linked_contact
from actions.verification import (
    END_FLOW,
    VerifiedOrderFormValidation,
    load_verified_order,
    reset_order_slots,
    verified_order,
)
from crm_bridge.errors import InvalidInput, RapportError, ReturnNotAllowed
from crm_bridge.gateway import OrderView, Outcome
from crm_bridge.rules import RETURN_WINDOW_DAYS, ReturnBlock, return_block, today

RETURN_SLOTS = ("return_item", "return_reason")


def matching_item(order: OrderView, text: str) -> str | None:
    """The order's item the customer means ("the jacket" -> "Rain Jacket"), if exactly one."""
    wanted = text.strip().lower()
    if not wanted:
        return None
    exact = [item.name for item in order.items if item.name.lower() == wanted]
    if exact:
        return exact[0]
    words = {w for w in wanted.replace(",", " ").split() if len(w) > 2}
    partial = [
        item.name
        for item in order.items
        if item.name.lower() in wanted or words & set(item.name.lower().split())
    ]
    return partial[0] if len(partial) == 1 else None


def refusal_wording(number: str, block: str) -> str:
    """The customer's explanation of a ``crm_bridge.rules.ReturnBlock``."""
    if block == ReturnBlock.NOT_DELIVERED:
        return (
            f"Order {number} hasn't been delivered yet, so it can't be returned. "
            "If you no longer want it, I can ask the team to cancel it."
        )
    return (
        f"Order {number} was delivered more than {RETURN_WINDOW_DAYS} days ago, "
        "which is past our return window. If the item is faulty, it's covered by our "
        "2-year warranty: a person from our team can help."
    )


def return_refusal(order: OrderView, on: date) -> str | None:
    """Why this order cannot be returned (the shop's rule, ``crm_bridge.rules``), in the
    customer's words; None if it can."""
    block = return_block(order.status, order.delivered_at, on)
    return None if block is None else refusal_wording(order.number, block)


class ValidateReturnForm(VerifiedOrderFormValidation):
    needs_proof = True

    def name(self) -> str:
        return "validate_return_form"

    def validate_order_number(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        """The order, as for every order form; a linked customer hears at once when it
        cannot be returned."""
        result = super().validate_order_number(value, dispatcher, tracker, domain)
        return self._end_if_refused(result, result.get("order_number"), dispatcher, tracker)

    def validate_proof_code(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        """The emailed code; once it proves the customer, refuse at once when the order
        they already named cannot be returned."""
        result = super().validate_proof_code(value, dispatcher, tracker, domain)
        proven = result.get("proof_code") and result.get("order_number", True)
        number = tracker.get_slot("order_number") if proven else None
        return self._end_if_refused(result, number, dispatcher, tracker)

    @staticmethod
    def _end_if_refused(
        result: dict[str, Any], number: Any, dispatcher: CollectingDispatcher, tracker: Tracker
    ) -> dict[str, Any]:
        """End the flow (saying why) when the verified order cannot be returned."""
        if not number:
            return result
        try:
            contact = linked_contact(tracker, proven=True)
            if contact is None:
                return result  # not proven yet: the code comes first
            order = get_gateway().get_order_for_contact(contact.id, str(number))
        except RapportError:
            return result  # the next step reports it
        refusal = return_refusal(order, today())
        if refusal is None:
            return result
        dispatcher.utter_message(text=refusal)
        return {**result, "order_number": None, "email": None, **END_FLOW}

    def validate_return_item(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        """One of the order's items; otherwise offer them as buttons."""
        try:
            _, order = verified_order(tracker, proven=True)
        except RapportError as error:
            tell_crm_failure(dispatcher, error, tracker)
            return {"return_item": None}
        refusal = return_refusal(order, today())
        if refusal:
            # Nothing to return here: say why and end the flow.
            dispatcher.utter_message(text=refusal)
            return {"return_item": None, "order_number": None, "email": None, **END_FLOW}
        item = matching_item(order, str(value or ""))
        if item is None:
            dispatcher.utter_message(
                text=f"Which of the items in order {order.number} would you like to return?",
                buttons=[{"title": i.name, "payload": i.name} for i in order.items],
            )
            return {"return_item": None}
        return {"return_item": item}

    def validate_return_reason(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        """Any short explanation; not empty."""
        reason = str(value or "").strip()
        return {"return_reason": reason[:1000] if reason else None}


class ActionSubmitReturn(Action):
    """Create the return request and give its reference."""

    def name(self) -> str:
        return "action_submit_return"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[dict[str, Any]]:
        events = [*reset_order_slots(), *(SlotSet(slot, None) for slot in RETURN_SLOTS)]
        if not tracker.get_slot("order_number"):
            return events  # the form ended early and said why (a refused return)
        found = load_verified_order(dispatcher, tracker, proven=True)
        if found is None:
            return events
        contact, order = found
        refusal = return_refusal(order, today())
        if refusal:
            dispatcher.utter_message(text=refusal)
            return events
        try:
            created = get_gateway().create_return(
                conversation_ref(tracker),
                contact.id,
                order.number,
                tracker.get_slot("return_item") or "",
                tracker.get_slot("return_reason") or "",
            )
        except InvalidInput as error:
            dispatcher.utter_message(text=error.message)
            return events
        except ReturnNotAllowed as error:
            dispatcher.utter_message(text=refusal_wording(error.order_number, error.block))
            return events
        except RapportError as error:
            tell_crm_failure(dispatcher, error, tracker)
            return events
        dispatcher.utter_message(
            text=f"Done! Your return {created.reference} for the {created.item} is registered. "
            f"We've emailed a free return label to {contact.email}. Your refund is paid within "
            "5 working days of the item reaching us."
        )
        return [*events, SlotSet("interaction_outcome", Outcome.TICKET_CREATED.value)]
