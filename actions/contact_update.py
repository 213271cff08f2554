"""Update contact details (contact_update_form -> action_update_contact).

Only for a proven customer: anyone else first proves who they are with a code sent to the
email on their account (an order's number and email are not enough to change details).
"""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.crm import get_gateway
from actions.handoff import tell_crm_failure
from actions.identity import linked_contact
from actions.verification import VerifiedOrderFormValidation, reset_order_slots
from crm_bridge.errors import InvalidInput, RapportError
from crm_bridge.validation import normalise_email, normalise_phone


def parse_contact_value(raw: str) -> tuple[str, str]:
    """``("email" | "phone", normalised value)``; ``InvalidInput`` when it is neither."""
    value = raw.strip()
    if "@" in value:
        return "email", normalise_email(value)
    return "phone", normalise_phone(value)


class ValidateContactUpdateForm(VerifiedOrderFormValidation):
    needs_order_when_linked = False
    needs_proof = True

    def name(self) -> str:
        return "validate_contact_update_form"

    def validate_new_contact_value(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        """A valid email or phone number, re-asked with the reason when it is not."""
        try:
            _, normalised = parse_contact_value(str(value or ""))
        except InvalidInput as error:
            dispatcher.utter_message(text=error.message)
            return {"new_contact_value": None}
        return {"new_contact_value": normalised}


class ActionUpdateContact(Action):
    """Store the new email or phone on the verified customer's contact."""

    def name(self) -> str:
        return "action_update_contact"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[dict[str, Any]]:
        events = [*reset_order_slots(), SlotSet("new_contact_value", None)]
        try:
            contact = linked_contact(tracker, proven=True)
            if contact is None:
                dispatcher.utter_message(
                    text="I need to confirm who you are before changing any details."
                )
                return events
            field, value = parse_contact_value(str(tracker.get_slot("new_contact_value") or ""))
            get_gateway().update_contact_details(contact.id, **{field: value})
        except InvalidInput as error:
            dispatcher.utter_message(text=error.message)
            return events
        except RapportError as error:
            tell_crm_failure(dispatcher, error, tracker)
            return events
        label = "email address" if field == "email" else "phone number"
        dispatcher.utter_message(text=f"Done: your {label} is now {value}.")
        return [*events, SlotSet("interaction_outcome", "resolved_by_bot")]
