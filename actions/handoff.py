"""A customer asks for a person. For now: a ticket for the support team (the live
handoff to an agent in Slack is its own milestone and will replace this action)."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.crm import get_gateway, tell_crm_failure
from actions.identity import conversation_ref, linked_contact
from crm_bridge.errors import CrmError
from crm_bridge.gateway import Outcome, TicketCategory

RECENT_MESSAGES = 5


def recent_customer_messages(tracker: Tracker) -> list[str]:
    """The customer's last few messages, for the agent's context."""
    texts = [
        str(event.get("text"))
        for event in tracker.events
        if event.get("event") == "user"
        and event.get("text")
        and not str(event["text"]).startswith("/")
    ]
    return texts[-RECENT_MESSAGES:]


class ActionHandoffToHuman(Action):
    """Open a human_request ticket and tell the customer how they'll be contacted."""

    def name(self) -> str:
        return "action_handoff_to_human"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[dict[str, Any]]:
        try:
            contact = linked_contact(tracker)
            ticket = get_gateway().open_ticket(
                conversation_ref(tracker),
                TicketCategory.HUMAN_REQUEST,
                "Customer asked to talk to a person",
                "\n".join(recent_customer_messages(tracker)),
                contact_id=contact.id if contact else None,
            )
        except CrmError as error:
            tell_crm_failure(dispatcher, error)
            return []
        how = "by email" if contact and contact.email else "here in this chat"
        dispatcher.utter_message(
            text=f"I've passed your conversation to our support team (reference "
            f"{ticket.reference}). A person will get back to you {how}, usually within a few "
            "hours during opening times (Mon–Fri 8:00–20:00, Sat 9:00–17:00)."
        )
        return [SlotSet("interaction_outcome", Outcome.HANDED_OFF.value)]
