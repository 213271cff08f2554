"""A customer asks for a person: a ticket for the support team and a queued handoff.

Once an agent claims the handoff, the HandoffPolicy keeps the bot silent and runs
``action_relay_to_agent`` for each customer message until the agent hands back."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.crm import get_gateway, get_handoff_desk, tell_crm_failure
from actions.identity import conversation_ref, linked_contact
from crm_bridge.errors import CrmError
from crm_bridge.gateway import Outcome, TicketCategory
from crm_bridge.handoff import HandoffReason

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
            desk = get_handoff_desk()
            handoff = desk.request(
                conversation_ref(tracker), HandoffReason.CUSTOMER_REQUEST, ticket_id=ticket.id
            )
            position = desk.queue_position(handoff.id)
        except CrmError as error:
            tell_crm_failure(dispatcher, error)
            return []
        how = "by email" if contact and contact.email else "here in this chat"
        queue = f" You're number {position} in the queue." if position else ""
        dispatcher.utter_message(
            text=f"I've passed your conversation to our support team (reference "
            f"{ticket.reference}).{queue} A person will join this chat or get back to you "
            f"{how}, usually within a few hours during opening times "
            "(Mon–Fri 8:00–20:00, Sat 9:00–17:00)."
        )
        return [SlotSet("interaction_outcome", Outcome.HANDED_OFF.value)]


class ActionRelayToAgent(Action):
    """Runs (silently) for each customer message while an agent holds the conversation.

    The message itself is already in the CRM transcript, where agent consoles read it;
    the bot says nothing.
    """

    def name(self) -> str:
        return "action_relay_to_agent"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[dict[str, Any]]:
        return []
