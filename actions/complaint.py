"""Complaints (complaint_form -> action_file_complaint): every complaint becomes a ticket."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.crm import get_gateway
from actions.handoff import tell_crm_failure
from actions.identity import conversation_ref, linked_contact
from crm_bridge.errors import RapportError
from crm_bridge.gateway import Outcome, TicketCategory

SUBJECT_CHARS = 80


class ActionFileComplaint(Action):
    """Open a complaint ticket with the customer's own words."""

    def name(self) -> str:
        return "action_file_complaint"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[dict[str, Any]]:
        text = str(tracker.get_slot("complaint_text") or "").strip()
        events: list[dict[str, Any]] = [SlotSet("complaint_text", None)]
        subject = text.splitlines()[0][:SUBJECT_CHARS] if text else "Complaint"
        try:
            contact = linked_contact(tracker)
            ticket = get_gateway().open_ticket(
                conversation_ref(tracker),
                TicketCategory.COMPLAINT,
                subject,
                text,
                contact_id=contact.id if contact else None,
                order_number=tracker.get_slot("order_number"),
            )
        except RapportError as error:
            tell_crm_failure(dispatcher, error, tracker)
            return events
        follow_up = "by email" if contact and contact.email else "here in this chat"
        dispatcher.utter_message(
            text=f"Thank you for telling us, and I'm sorry. I've logged your complaint as "
            f"{ticket.reference}; our customer care team will reply {follow_up} within two "
            "working days."
        )
        return [*events, SlotSet("interaction_outcome", Outcome.TICKET_CREATED.value)]
