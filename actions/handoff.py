"""Handing a conversation to a person, as the conversation sees it: what to tell the
team (``handoff_ask``) and the customer; the work (ticket, queue, business hours, the
agents' channel) is ``bot.handoff_service``'s.

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

import contextlib
import logging
import re
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.crm import get_handoff_service
from actions.identity import conversation_ref, linked_contact
from actions.inbound import customer_text
from bot.handoff_service import HandoffAsk
from bot.handoff_wording import handoff_answer_text
from crm_bridge.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    RapportError,
    Unavailable,
)
from crm_bridge.handoff import HandoffReason

logger = logging.getLogger(__name__)

RECENT_MESSAGES = 10
REFERENCE = re.compile(r"\b[TR]-\d{6}\b")


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


def handoff_ask(tracker: Tracker, reason: HandoffReason) -> HandoffAsk:
    """What the conversation tells the team: contact, intents, orders, references and
    the last messages."""
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
                if found not in references:
                    references.append(found)
    slot_order = tracker.get_slot("order_number")
    if slot_order and str(slot_order) not in orders:
        orders.append(str(slot_order))
    contact = None
    with contextlib.suppress(RapportError):  # unknown when the CRM is down: still a person
        contact = linked_contact(tracker)
    return HandoffAsk(
        conversation=conversation_ref(tracker),
        reason=reason,
        contact=contact,
        recent=recent_messages(tracker),
        intents=intents,
        orders=orders,
        references=references,
    )


def start_handoff(
    dispatcher: CollectingDispatcher, tracker: Tracker, reason: HandoffReason, intro: str = ""
) -> None:
    """Ask the handoff service for a person and tell the customer what happened.
    Raises RapportError when the CRM cannot record it."""
    ask = handoff_ask(tracker, reason)
    answer = get_handoff_service().request(ask)
    by_email = bool(ask.contact and ask.contact.email)
    dispatcher.utter_message(text=handoff_answer_text(answer, by_email, intro))


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
        text = customer_text(tracker.latest_message)
        get_handoff_service().relay_customer_message(tracker.sender_id, text)
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
