"""Consent in chat (consent_form -> action_record_consent): "stop sending me offers",
"I'd like order updates on Telegram".

The topic, the direction and the channel come from the message itself (a small
deterministic reading, below) or from the follow-up question's buttons
(``/manage_consent{"consent_topic": ..., "consent_choice": ...}``). Each decision is stored
by ``crm_bridge.consent.ConsentBook`` with its channel and the exact sentence the customer
is shown as the confirmation.

Who may decide: an opt-out is taken from any identity linked to the contact, even one
linked only by an order's number and email. Opting out can never harm the customer (at
worst they miss an offer), and making it hard would keep sending messages to someone who
asked us to stop. An opt-in needs a proven identity: it lets us write to the person, so
a stranger who knows an order's email must not be able to switch it on for them.
"""

from __future__ import annotations

import re
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.crm import crm_url
from actions.handoff import tell_crm_failure
from actions.identity import channel_of, linked_contact
from actions.verification import PROOF_SLOTS, VerifiedOrderFormValidation
from crm_bridge.consent import ALL_CHANNELS, ConsentBook
from crm_bridge.db import session_factory
from crm_bridge.errors import RapportError

SHOP = "Rapport Demo Shop"
CONSENT_SLOTS = ("consent_topic", "consent_choice", "consent_channel")
# What a customer may name, and the ConsentBook topics each stands for.
TOPIC_GROUPS = {
    "order_updates": ("order_updates",),
    "offers": ("offers",),
    "newsletter": ("newsletter",),
    "marketing": ("offers", "newsletter"),
    "all": ("order_updates", "offers", "newsletter"),
}
TOPIC_LABELS = {
    "order_updates": "order updates",
    "offers": "offers",
    "newsletter": "the newsletter",
}
CHANNEL_LABELS = {
    ALL_CHANNELS: "on any channel",
    "telegram": "on Telegram",
    "slack": "on Slack",
    "web": "in the web chat",
}
CHOICES = ("in", "out")
# Intents a typed answer to the topic or choice question may have ("offers", "yes").
ANSWER_INTENTS = frozenset({"inform", "affirm", "deny"})

# First match wins, so the more specific phrases come first.
_TOPIC_PATTERNS = (
    (
        "order_updates",
        r"order (status )?(updates?|notifications?|messages?)|shipping updates?"
        r"|delivery (updates?|notifications?)|updates? (about|on) (my )?orders?|tracking updates?",
    ),
    ("newsletter", r"news ?letters?|mailing list"),
    ("marketing", r"marketing|advertising|adverts?|ads|promotional|spam"),
    ("offers", r"offers?|promotions?|promos?|deals?|discounts?|sales?|coupons?|vouchers?"),
    ("all", r"everything|all (of )?(your|the|these) messages|all messages|anything"),
)
# A "no" anywhere wins over a "yes": "I'd like to stop getting offers" is an opt-out.
_OUT = re.compile(
    r"\b(stop|unsubscribe|opt(ed|ing)? ?out|no more|don'?t|do not|never|no longer|cancel"
    r"|remove me|take me off|turn (it )?off|switch (it )?off|disable|block|not interested"
    r"|no thanks|withdraw|leave me alone|quit)\b|^(no|nope|nah)\b"
)
_IN = re.compile(
    r"\b(subscribe|sign me up|sign up|opt(ed|ing)? ?in|i'?d (like|love)|i would (like|love)"
    r"|i want|send me|turn (it )?on|switch (it )?on|enable|get|receive|start|keep me"
    r"|allow|yes)\b"
)
_CHANNEL_PATTERNS = (
    (ALL_CHANNELS, r"everywhere|all channels|any channel|every channel|all of them"),
    ("telegram", r"telegram"),
    ("slack", r"slack"),
    ("web", r"web ?chat|website|web site|the site|browser"),
)
_HERE = re.compile(r"\b(here|this chat|this channel)\b")


def _plain(text: str) -> str:
    return " ".join(text.lower().replace("\u2019", "'").split())


def read_topic(text: str) -> str | None:
    """The topic (group) a message names, or None."""
    plain = _plain(text)
    for topic, pattern in _TOPIC_PATTERNS:
        if re.search(rf"\b({pattern})\b", plain):
            return topic
    return None


def read_choice(text: str) -> str | None:
    """``"out"``, ``"in"`` or None for a message about what the customer wants to get."""
    plain = _plain(text)
    if _OUT.search(plain):
        return "out"
    if _IN.search(plain):
        return "in"
    return None


def read_channel(text: str, current: str) -> str | None:
    """The channel a message names (``*`` for all, ``current`` for "here"), or None."""
    plain = _plain(text)
    for channel, pattern in _CHANNEL_PATTERNS:
        if re.search(rf"\b({pattern})\b", plain):
            return channel
    return current if _HERE.search(plain) else None


def decision_channel(named: str | None, choice: str, current: str) -> str:
    """Where the decision applies. Unnamed: an opt-out stops the topic everywhere (what
    "stop sending me offers" means); an opt-in starts it only on the channel the customer
    is writing from (consent to marketing is given as narrowly as it was asked)."""
    if named:
        return named
    return ALL_CHANNELS if choice == "out" else current


def confirmation(topic: str, choice: str, channel: str) -> str:
    """The sentence the customer is shown, stored as the wording of the decision."""
    labels = [TOPIC_LABELS[t] for t in TOPIC_GROUPS[topic]]
    what = labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " or " + labels[-1]
    where = CHANNEL_LABELS.get(channel, "in this chat")
    if choice == "out":
        return (
            f"Done: you won't get {what} from {SHOP} {where} any more. "
            "You can change this at any time by telling me."
        )
    what = what.replace(" or ", " and ")
    first = TOPIC_LABELS[TOPIC_GROUPS[topic][0]].removeprefix("the ")
    return (
        f"Done: you'll get {what} from {SHOP} {where}. You can stop at any time: "
        f'just tell me "stop sending me {first}".'
    )


def consent_book() -> ConsentBook:
    """The consent decisions in the CRM the actions use (CRM_DATABASE_URL)."""
    return ConsentBook(session_factory(crm_url()))


def _latest_text(tracker: Tracker) -> str:
    return str((tracker.latest_message or {}).get("text") or "")


def _about_consent(tracker: Tracker, slot: str) -> bool:
    """Read the message for ``slot`` only when it asks for consent, or plainly answers
    that slot's question: an email typed for the proof is no topic, and "I want to cancel
    my order" is another request, not an opt-out."""
    intent = ((tracker.latest_message or {}).get("intent") or {}).get("name")
    if intent == "manage_consent":
        return True
    return tracker.get_slot("requested_slot") == slot and intent in ANSWER_INTENTS


class ValidateConsentForm(VerifiedOrderFormValidation):
    """Topic and direction first; then a proof only where the decision needs one."""

    needs_order_when_linked = False
    needs_proof = True  # the most an opt-in asks; required_slots relaxes it for opt-outs

    def name(self) -> str:
        return "validate_consent_form"

    async def required_slots(
        self,
        domain_slots: list[str],
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: DomainDict,
    ) -> list[str]:
        """The topic and the choice; the proof unless proven, or opting out while linked."""
        wanted = [slot for slot in domain_slots if slot not in PROOF_SLOTS]
        try:
            proven = linked_contact(tracker, proven=True) is not None
            linked = proven or linked_contact(tracker) is not None
        except RapportError:
            proven = linked = False  # the submit action reports the outage
        if proven or (linked and tracker.get_slot("consent_choice") == "out"):
            return wanted
        return [*wanted, *PROOF_SLOTS]

    def extract_consent_topic(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        """The topic named in the message ("no more offers")."""
        if tracker.get_slot("consent_topic") or not _about_consent(tracker, "consent_topic"):
            return {}
        topic = read_topic(_latest_text(tracker))
        return {"consent_topic": topic} if topic else {}

    def extract_consent_choice(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        """In or out, from the message's words ("stop", "unsubscribe", "I'd like")."""
        if tracker.get_slot("consent_choice") or not _about_consent(tracker, "consent_choice"):
            return {}
        choice = read_choice(_latest_text(tracker))
        return {"consent_choice": choice} if choice else {}

    @staticmethod
    def _with_channel(tracker: Tracker, slot: str, slots: dict[str, Any]) -> dict[str, Any]:
        # The channel is no question of its own: it is taken when named with the rest.
        if not _about_consent(tracker, slot):
            return slots
        named = read_channel(_latest_text(tracker), channel_of(tracker))
        return {**slots, "consent_channel": named} if named else slots

    def validate_consent_topic(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        """One of the topics (or a group of them); asked again with buttons otherwise."""
        if value not in TOPIC_GROUPS:
            return {"consent_topic": None}
        return self._with_channel(tracker, "consent_topic", {"consent_topic": value})

    def validate_consent_choice(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        """``in`` or ``out``; asked again with buttons otherwise."""
        if value not in CHOICES:
            return {"consent_choice": None}
        return self._with_channel(tracker, "consent_choice", {"consent_choice": value})


def reset_consent_slots() -> list[dict[str, Any]]:
    """Forget this decision's answers (and the proof slots), ready for the next one."""
    return [SlotSet(slot, None) for slot in (*CONSENT_SLOTS, *PROOF_SLOTS)]


class ActionRecordConsent(Action):
    """Store the decision for each topic it covers and confirm it in the stored words."""

    def name(self) -> str:
        return "action_record_consent"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[dict[str, Any]]:
        events = reset_consent_slots()
        topic = tracker.get_slot("consent_topic")
        choice = tracker.get_slot("consent_choice")
        if topic not in TOPIC_GROUPS or choice not in CHOICES:
            return events  # the form was stopped or ended before both were known
        current = channel_of(tracker)
        channel = decision_channel(tracker.get_slot("consent_channel"), choice, current)
        try:
            # Re-checked here: the form's proof may have been skipped for an opt-out.
            contact = linked_contact(tracker, proven=choice == "in")
            if contact is None:
                dispatcher.utter_message(
                    text="I need to confirm who you are before changing what we send you."
                )
                return events
            wording = confirmation(topic, choice, channel)
            book = consent_book()
            for each in TOPIC_GROUPS[topic]:
                book.record(contact.id, each, channel, choice == "in", wording, source="chat")
        except RapportError as error:
            tell_crm_failure(dispatcher, error, tracker)
            return events
        dispatcher.utter_message(text=wording)
        return [*events, SlotSet("interaction_outcome", "resolved_by_bot")]
