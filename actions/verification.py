"""The shared first half of every order form: which order, and is it really theirs?

A linked customer names one of their own orders. An unlinked customer gives an order
number and the email on that order; when both match, their channel identity is linked
to the contact (weakly: enough to read that order). Forms that change data
(``needs_proof``) first ask for a proof of the person instead: the email on the account,
then the 6-digit code sent to it; the order number, if any, must then be theirs.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import FormValidationAction
from rasa_sdk.types import DomainDict

from actions.crm import get_gateway, get_identity_proofs
from actions.handoff import tell_crm_failure
from actions.identity import channel_of, conversation_ref, identity_of, linked_contact
from crm_bridge.errors import Conflict, InvalidInput, OrderNotFound, RapportError
from crm_bridge.gateway import ContactView, OrderView
from crm_bridge.one_time_codes import EXPIRED_CODE, NO_CODE
from crm_bridge.validation import normalise_email, normalise_order_number

FAILURES_BEFORE_OFFERING_A_HUMAN = 3
VERIFICATION_SLOTS = ("order_number", "email")
PROOF_SLOTS = ("proof_email", "proof_code")
PROVEN = "proven"  # proof_code's value once proven: the code itself is not kept
# A validator returning this (with its slots) ends the form: the flow is over (e.g. a
# refused return), its questions are not asked again.
END_FLOW: dict[str, Any] = {"requested_slot": None}


def ends_flow(events: list[dict[str, Any]]) -> bool:
    """Did a validator end the form (``END_FLOW``)?"""
    return any(e.get("name") == "requested_slot" and e.get("value") is None for e in events)


class VerifiedOrderFormValidation(FormValidationAction):
    """Validates ``order_number`` (and ``email`` for unlinked customers); subclass per form."""

    #: Linked customers still name an order (False for forms about the account itself).
    needs_order_when_linked = True
    #: The form changes data: an order's number and email are not proof enough.
    needs_proof = False

    @abstractmethod
    def name(self) -> str:
        """Each form's validator names itself ``validate_<form>``; the base is not an action."""

    async def required_slots(
        self,
        domain_slots: list[str],
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: DomainDict,
    ) -> list[str]:
        """Drop the email check for linked customers (and the order when not needed);
        ask for a proof first where the form needs one and the customer has none."""
        try:
            linked = linked_contact(tracker, proven=self.needs_proof) is not None
        except RapportError:
            linked = False  # validation reports the outage when it asks the CRM
        if self.needs_proof and not linked:  # the proof, then the form without the email
            return [slot for slot in domain_slots if slot != "email"]
        dropped = set(PROOF_SLOTS)
        if linked:
            dropped |= {"email"} if self.needs_order_when_linked else set(VERIFICATION_SLOTS)
        return [slot for slot in domain_slots if slot not in dropped]

    def validate_proof_email(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        """Send a code to the address when it is a contact's (the answer never says)."""
        try:
            email = normalise_email(str(value or ""))
            get_identity_proofs().send_code(email, identity_of(tracker))
        except InvalidInput as error:
            dispatcher.utter_message(text=error.message)
            return {"proof_email": None}
        except RapportError as error:
            return self._proof_failed(dispatcher, error, tracker)
        dispatcher.utter_message(
            text=f"If {email} is the email on your account, I've just sent a 6-digit code to it."
        )
        return {"proof_email": email}

    def validate_proof_code(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        """The emailed code: right links the customer (proven); wrong asks again; no
        code or an expired one starts over with the address."""
        typed = str(value or "")
        if not any(character.isdigit() for character in typed):
            dispatcher.utter_message(
                text="That isn't a code. Let's send a new one: which email should I use?"
            )
            return {"proof_email": None, "proof_code": None}
        try:
            contact = get_identity_proofs().check_code(typed, identity_of(tracker))
        except InvalidInput as error:
            dispatcher.utter_message(text=error.message)
            if error.message in (NO_CODE, EXPIRED_CODE):
                return {"proof_email": None, "proof_code": None}
            return {"proof_code": None}
        except RapportError as error:
            return self._proof_failed(dispatcher, error, tracker)
        first_name = contact.name.split()[0] if contact.name.strip() else "there"
        dispatcher.utter_message(text=f"Thanks, {first_name}: that's confirmed.")
        return {"proof_code": PROVEN, **self._order_of(contact, dispatcher, tracker)}

    @staticmethod
    def _proof_failed(
        dispatcher: CollectingDispatcher, error: RapportError, tracker: Tracker
    ) -> dict[str, Any]:
        """Locked out, asked too often, or a system down: end the flow, offer a person."""
        if isinstance(error, Conflict):
            dispatcher.utter_message(text=str(error))
            dispatcher.utter_message(response="utter_offer_human")
        else:
            tell_crm_failure(dispatcher, error, tracker)
        return {**END_FLOW, "proof_email": None, "proof_code": None}

    @staticmethod
    def _order_of(
        contact: ContactView, dispatcher: CollectingDispatcher, tracker: Tracker
    ) -> dict[str, Any]:
        """Forget an order number given before the proof unless it is the customer's own
        (it was only checked for its shape then)."""
        number = tracker.get_slot("order_number")
        if not number:
            return {}
        try:
            get_gateway().get_order_for_contact(contact.id, str(number))
        except OrderNotFound:
            dispatcher.utter_message(
                text=f"I can't find an order {number} on your account. Could you check the number?"
            )
            return {"order_number": None}
        except RapportError:
            pass  # the form's next step asks the CRM again and reports it
        return {}

    async def _extract_validation_events(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[dict[str, Any]]:
        """As rasa-sdk's, except that a flow ended by a validator is not asked further."""
        events: list[dict[str, Any]] = await self.get_validation_events(dispatcher, tracker, domain)
        tracker.add_slots(events)
        if ends_flow(events):
            return events
        next_slot = await self.next_requested_slot(dispatcher, tracker, domain)
        return [*events, next_slot] if next_slot else events

    def validate_order_number(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        """Five digits; for a linked customer, one of their own orders."""
        try:
            number = normalise_order_number(str(value or ""))
        except InvalidInput as error:
            dispatcher.utter_message(text=error.message)
            return {"order_number": None}
        try:
            contact = linked_contact(tracker, proven=self.needs_proof)
            if contact is not None:
                get_gateway().get_order_for_contact(contact.id, number)
        except OrderNotFound:
            dispatcher.utter_message(
                text=f"I can't find an order {number} on your account. Could you check the number?"
            )
            return {"order_number": None}
        except RapportError as error:
            return self._crm_failed(dispatcher, error, tracker)
        return {"order_number": number}

    def validate_email(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        """The order's email: on a match, link this sender to the order's contact."""
        number = tracker.get_slot("order_number")
        if not number:
            return {"email": None}
        gateway = get_gateway()
        try:
            order = gateway.verify_order_email(number, str(value or ""))
            gateway.link_identity(
                channel_of(tracker), tracker.sender_id, order.contact_id, conversation_ref(tracker)
            )
        except InvalidInput as error:
            dispatcher.utter_message(text=error.message)
            return {"email": None}
        except OrderNotFound:
            return self._verification_failed(dispatcher, tracker)
        except RapportError as error:
            return self._crm_failed(dispatcher, error, tracker)
        return {"email": str(value).strip().lower(), "verification_failures": 0}

    @staticmethod
    def _verification_failed(dispatcher: CollectingDispatcher, tracker: Tracker) -> dict[str, Any]:
        # Same words whether the order or the email was wrong: no hints for guessers.
        failures = int(tracker.get_slot("verification_failures") or 0) + 1
        dispatcher.utter_message(
            text="I couldn't find an order with that number and email. Let's try again."
        )
        if failures >= FAILURES_BEFORE_OFFERING_A_HUMAN:
            dispatcher.utter_message(response="utter_offer_human")
        return {"order_number": None, "email": None, "verification_failures": failures}

    @staticmethod
    def _crm_failed(
        dispatcher: CollectingDispatcher, error: RapportError, tracker: Tracker
    ) -> dict[str, Any]:
        tell_crm_failure(dispatcher, error, tracker)
        return {"order_number": None, "email": None}


def verified_order(tracker: Tracker, proven: bool = False) -> tuple[ContactView, OrderView]:
    """The form's order for the (now linked; with ``proven``, proven) customer; raises
    RapportError subclasses."""
    contact = linked_contact(tracker, proven=proven)
    if contact is None:
        raise OrderNotFound("The customer is not verified.")
    return contact, get_gateway().get_order_for_contact(
        contact.id, tracker.get_slot("order_number")
    )


def reset_order_slots() -> list[dict[str, Any]]:
    """Events that forget the order and email, ready for the next request."""
    from rasa_sdk.events import SlotSet

    return [
        SlotSet("order_number", None),
        SlotSet("email", None),
        SlotSet("proof_email", None),
        SlotSet("proof_code", None),
    ]


def load_verified_order(
    dispatcher: CollectingDispatcher, tracker: Tracker, proven: bool = False
) -> tuple[ContactView, OrderView] | None:
    """The verified order, or None after telling the customer why it can't be had."""
    try:
        return verified_order(tracker, proven=proven)
    except OrderNotFound:
        dispatcher.utter_message(text="Sorry, I couldn't find that order.")
    except RapportError as error:
        tell_crm_failure(dispatcher, error, tracker)
    return None
