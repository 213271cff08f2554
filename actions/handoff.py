"""Handing a conversation to a person: a ticket, a queued handoff, and the agents told.

A handoff starts when the customer asks for a person, after two misunderstandings in a
row (``actions.fallback``) or when an action cannot reach a system it needs
(``tell_crm_failure`` below, which also words every kind of error for the customer).
The agents' Slack channel (when configured) gets a summary with a Claim button.
Outside business hours the customer gets a ticket and the time of the next opening
instead of a queue nobody watches. Once an agent claims the
handoff, the HandoffPolicy keeps the bot silent and runs ``action_relay_to_agent`` for
each customer message until the agent hands back.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timezone
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.crm import get_agent_console, get_business_hours, get_gateway, get_handoff_desk
from actions.identity import conversation_ref, linked_contact
from actions.inbound import customer_text
from bot.agent_console import HandoffSummary
from crm_bridge.errors import (
    Conflict,
    CrmUnavailable,
    InvalidInput,
    NotFound,
    RapportError,
    Unavailable,
)
from crm_bridge.gateway import ContactView, TicketCategory
from crm_bridge.handoff import HandoffReason

logger = logging.getLogger(__name__)

RECENT_MESSAGES = 10
REFERENCE = re.compile(r"\b[TR]-\d{6}\b")
SUBJECTS = {
    HandoffReason.CUSTOMER_REQUEST: "Customer asked to talk to a person",
    HandoffReason.REPEATED_FALLBACK: "The assistant did not understand the customer",
    HandoffReason.ACTION_FAILED: "The assistant could not complete a request",
}
OPENING_HOURS_HINT = "usually within a few hours during our opening times"


def recent_messages(tracker: Tracker, limit: int = RECENT_MESSAGES) -> list[tuple[str, str]]:
    """The conversation's last messages, both sides, oldest first (button payloads left out)."""
    lines = []
    for event in tracker.events:
        # The customer's own words, also when the inbound step sent Rasa an /intent.
        text = customer_text(event) if event.get("event") == "user" else ""
        text = text or str(event.get("text") or "").strip()
        if not text or text.startswith("/"):
            continue
        if event.get("event") == "user":
            lines.append(("Customer", text))
        elif event.get("event") == "bot":
            lines.append(("Bot", text))
    return lines[-limit:]


def summarise(
    tracker: Tracker,
    handoff_id: int,
    reason: HandoffReason,
    contact: ContactView | None,
    ticket: str | None,
    position: int,
) -> HandoffSummary:
    """What the agents' channel shows about this conversation."""
    intents: list[str] = []
    orders: list[str] = []
    references: list[str] = []
    for event in tracker.events:
        if event.get("event") == "user":
            parse = event.get("parse_data") or {}
            name = (parse.get("intent") or {}).get("name")
            if name and name not in intents:
                intents.append(name)
            for entity in parse.get("entities") or []:
                value = str(entity.get("value"))
                if entity.get("entity") == "order_number" and value not in orders:
                    orders.append(value)
        elif event.get("event") == "bot":
            for found in REFERENCE.findall(str(event.get("text") or "")):
                if found not in references and found != ticket:
                    references.append(found)
    slot_order = tracker.get_slot("order_number")
    if slot_order and str(slot_order) not in orders:
        orders.append(str(slot_order))
    who = None
    if contact is not None:
        who = f"{contact.name} <{contact.email}>" if contact.email else contact.name
    return HandoffSummary(
        handoff_id=handoff_id,
        reason=reason.value,
        channel=conversation_ref(tracker).channel,
        contact=who,
        ticket=ticket,
        queue_position=position,
        intents=intents,
        orders=orders,
        references=references,
        recent=recent_messages(tracker),
    )


def announce(summary: HandoffSummary) -> None:
    """Post the summary in the agents' channel and remember its thread (best effort:
    the handoff stands and the agent API lists it even when Slack is down)."""
    console = get_agent_console()
    if console is None:
        return
    try:
        thread = console.announce(summary)
        get_handoff_desk().attach_console_thread(summary.handoff_id, console.channel, thread)
    except RapportError as error:  # AgentConsoleError is one (Unavailable)
        logger.warning("Could not announce handoff #%s to agents: %s", summary.handoff_id, error)


def start_handoff(
    dispatcher: CollectingDispatcher, tracker: Tracker, reason: HandoffReason, intro: str = ""
) -> None:
    """Open a ticket and queue the conversation for a person (or, outside business hours,
    promise an answer at the next opening). Raises RapportError when the CRM cannot record it."""
    desk = get_handoff_desk()
    conversation = conversation_ref(tracker)
    live = desk.ownership(tracker.sender_id)
    if live.handoff is not None:
        position = desk.queue_position(live.handoff.id)
        where = f"You're number {position} in the queue." if position else "An agent has it."
        dispatcher.utter_message(text=f"{intro}Your conversation is already with our team. {where}")
        return
    contact = ticket = None
    try:
        contact = linked_contact(tracker)
        ticket = get_gateway().open_ticket(
            conversation,
            TicketCategory.HUMAN_REQUEST,
            SUBJECTS.get(reason, "Handoff"),
            "\n".join(f"{who}: {text}" for who, text in recent_messages(tracker)),
            contact_id=contact.id if contact else None,
        )
    except RapportError:
        if reason is not HandoffReason.ACTION_FAILED:
            raise
        # The CRM records failed; the handoff desk may still work. A person can help.
    how = "by email" if contact and contact.email else "here in this chat"
    hours = get_business_hours()
    now = datetime.now(timezone.utc)
    if not hours.is_open(now):
        if ticket is None:
            # Nothing would be recorded for the team to answer: never promise a reply.
            raise CrmUnavailable("No ticket could be opened outside business hours.")
        opening = hours.next_opening(now)
        when = f" from {opening:%A %H:%M} ({opening.tzname()})" if opening else " soon"
        reference = f" under reference {ticket.reference}" if ticket else ""
        dispatcher.utter_message(
            text=f"{intro}Our team is offline right now. I've passed your request on"
            f"{reference}, and a person will get back to you {how}{when}. I'm here meanwhile."
        )
        return
    handoff = desk.request(conversation, reason, ticket_id=ticket.id if ticket else None)
    position = desk.queue_position(handoff.id)
    announce(
        summarise(
            tracker, handoff.id, reason, contact, ticket.reference if ticket else None, position
        )
    )
    reference = f" (reference {ticket.reference})" if ticket else ""
    queue = f" You're number {position} in the queue." if position else ""
    wait = desk.typical_wait()
    if position and wait is not None:
        minutes = max(1, round(wait.total_seconds() * position / 60))
        queue += f" The wait is usually about {minutes} minute{'s' if minutes > 1 else ''}."
    dispatcher.utter_message(
        text=f"{intro}I've passed your conversation to our support team{reference}.{queue} "
        f"A person will join this chat or get back to you {how}, {OPENING_HOURS_HINT}."
    )


class ActionHandoffToHuman(Action):
    """The customer asked for a person."""

    def name(self) -> str:
        return "action_handoff_to_human"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[dict[str, Any]]:
        try:
            start_handoff(dispatcher, tracker, HandoffReason.CUSTOMER_REQUEST)
        except RapportError as error:
            tell_crm_failure(dispatcher, error)
        return []


class ActionRelayToAgent(Action):
    """Runs (silently) for each customer message while an agent holds the conversation:
    the message goes to the agent's Slack thread (it is in the CRM transcript already,
    where other agent consoles read it). The bot says nothing."""

    def name(self) -> str:
        return "action_relay_to_agent"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[dict[str, Any]]:
        console = get_agent_console()
        text = customer_text(tracker.latest_message)
        if console is None or not text:
            return []
        try:
            handoff = get_handoff_desk().ownership(tracker.sender_id).handoff
            if handoff is not None and handoff.console_thread:
                console.relay_customer_message(
                    handoff.console_thread, text, handoff.console_channel
                )
        except RapportError as error:  # AgentConsoleError is one (Unavailable)
            # The transcript still has it; the agent can read it there.
            logger.warning("Could not relay a customer message to the agent: %s", error)
        return []


# Each kind of crm_bridge.errors in the customer's words (never the backend's text).
# InvalidInput says what is wrong in its own message; Unavailable uses a response.
CUSTOMER_WORDING: tuple[tuple[type[RapportError], str], ...] = (
    (NotFound, "Sorry, I couldn't find that. Could you check it and try again?"),
    (Conflict, "Sorry, that can't be done right now. I can pass you to a person if you like."),
)
SOMETHING_WENT_WRONG = (
    "Sorry, something went wrong on our side. Please try again, or ask for a person."
)


def tell_crm_failure(dispatcher: Any, error: RapportError, tracker: Any = None) -> None:
    """Answer a failed call in the customer's terms, by the error's kind.

    With the conversation's ``tracker``, an unavailable system also hands the
    conversation to a person when the handoff desk can still record it.
    """
    logger.warning("CRM call failed: %s", type(error).__name__)
    if isinstance(error, Unavailable) and tracker is not None:
        try:
            start_handoff(
                dispatcher,
                tracker,
                HandoffReason.ACTION_FAILED,
                intro="Sorry, I can't reach our customer records right now. ",
            )
            return
        except RapportError:
            pass  # the desk is down too: say so and offer a person later
    if isinstance(error, Unavailable):
        dispatcher.utter_message(response="utter_crm_unavailable")
    elif isinstance(error, InvalidInput):
        dispatcher.utter_message(text=error.message)
    else:
        wording = (text for kind, text in CUSTOMER_WORDING if isinstance(error, kind))
        dispatcher.utter_message(text=next(wording, SOMETHING_WENT_WRONG))
