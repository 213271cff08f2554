"""A customer's own data, in chat: "what do you know about me?" (data_access_form ->
action_show_my_data) and "delete my data" (data_erasure_form -> action_erase_my_data).

Both show or destroy personal data, so both need a proven identity: the forms ask for
the emailed code first (``VerifiedOrderFormValidation`` with ``needs_proof``), and the
actions check the proven link again when they run. Consent ("stop sending me offers")
is in ``actions.consent``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.crm import crm_url
from actions.handoff import tell_crm_failure
from actions.identity import linked_contact
from actions.verification import END_FLOW, PROOF_SLOTS, VerifiedOrderFormValidation
from bot import settings as bot_settings
from crm_bridge import settings as crm_settings
from crm_bridge.conversation_stores import ConversationStore, Subject
from crm_bridge.data_export import ContactSummary, contact_summary
from crm_bridge.db import session_factory, unit_of_work
from crm_bridge.erasure import collect_subject, erase_contact, erase_crm, stores_from_settings
from crm_bridge.errors import RapportError
from crm_bridge.export_links import DEFAULT_TTL, ExportLinks
from crm_bridge.link_tokens import identity_secret
from crm_bridge.settings import CrmSettings

logger = logging.getLogger(__name__)

PROOF_LABELS = {
    "order_email": "an order's number and email",
    "email_code": "a code sent to your email",
    "link_token": "a sign-in link",
    "shop_token": "your shop login",
    "phone_contact": "your Telegram phone contact",
    "agent": "checked by our team",
}
CHANNEL_NAMES = {"rest": "this chat", "web": "web chat", "telegram": "Telegram", "slack": "Slack"}
TOPIC_NAMES = {"order_updates": "order updates", "offers": "offers", "newsletter": "newsletter"}
# Rasa saves this turn's tracker after the erasing action returns, and its event log
# writes the turn to the CRM from a background thread: both recreate what was just
# erased. So the same subject is erased again, this many seconds after the erasure
# (the first pass catches the turn's save, the second a slow or retried log write).
SECOND_PASS_AFTER_SECONDS = (3.0, 20.0)
_second_passes: set[asyncio.Task[None]] = set()  # keeps the scheduled passes alive

NEED_PROOF = "I need to confirm who you are before I can do that."


def _crm() -> tuple[CrmSettings, Any, bytes]:
    settings = crm_settings.load()
    return settings, session_factory(crm_url()), identity_secret(settings)


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def summary_text(summary: ContactSummary) -> str:
    """The summary as one chat message (plain lines: every channel shows them)."""
    details = [f"name {summary.name}"]
    details += [f"email {summary.email}"] if summary.email else []
    details += [f"phone {summary.phone}"] if summary.phone else []
    channels = ", ".join(
        f"{CHANNEL_NAMES.get(c.channel, c.channel)} ({PROOF_LABELS.get(c.proof, c.proof)})"
        for c in summary.channels
    )
    consents = []
    for state in summary.consents:
        text = f"{TOPIC_NAMES[state.topic]}: {_yes(state.everywhere)}"
        text += "" if state.decided else " (default)"
        for channel, allowed in state.per_channel:
            text += f", {_yes(allowed)} on {CHANNEL_NAMES.get(channel, channel)}"
        consents.append(text)
    return "\n".join(
        [
            "Here's what we hold about you:",
            f"- Your details: {'; '.join(details)} (customer since {summary.customer_since}).",
            f"- Linked chats: {channels or 'none'}.",
            f"- Messages we may send you: {'; '.join(consents)}.",
            f"- {summary.conversations} conversation(s), {summary.orders} order(s), "
            f"{summary.tickets} ticket(s), {summary.returns} return(s).",
        ]
    )


class ValidateDataAccessForm(VerifiedOrderFormValidation):
    """Only the proof: a proven customer goes straight to the summary."""

    needs_order_when_linked = False
    needs_proof = True

    def name(self) -> str:
        return "validate_data_access_form"


class ActionShowMyData(Action):
    """The summary of what we hold, and a single-use link to the full export."""

    def name(self) -> str:
        return "action_show_my_data"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[dict[str, Any]]:
        events = [SlotSet(slot, None) for slot in PROOF_SLOTS]
        try:
            contact = linked_contact(tracker, proven=True)
            if contact is None:
                dispatcher.utter_message(text=NEED_PROOF)
                return events
            _, factory, secret = _crm()
            summary = contact_summary(factory, contact.id)
            token = ExportLinks(factory, secret).issue(contact.id)
        except RapportError as error:
            tell_crm_failure(dispatcher, error, tracker)
            return events
        link = f"{bot_settings.current().web_chat_url}/export/{token}"
        minutes = int(DEFAULT_TTL.total_seconds() // 60)
        dispatcher.utter_message(text=summary_text(summary))
        # A link on every channel (Telegram included): it works once, so a copy of this
        # chat found later (a shared screen, a backup) opens nothing.
        dispatcher.utter_message(
            text=f"Everything we hold (as a JSON file): {link}\n"
            f"The link works once, within {minutes} minutes."
        )
        return [*events, SlotSet("interaction_outcome", "resolved_by_bot")]


class ValidateDataErasureForm(VerifiedOrderFormValidation):
    """The proof, then an explicit "yes, delete everything"."""

    needs_order_when_linked = False
    needs_proof = True

    def name(self) -> str:
        return "validate_data_erasure_form"

    def validate_erasure_confirmed(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        """Yes goes on; no ends the flow with nothing deleted."""
        if value is True:
            return {"erasure_confirmed": True}
        if value is False:
            dispatcher.utter_message(text="OK, I haven't deleted anything.")
            return {**END_FLOW, "erasure_confirmed": False}
        return {"erasure_confirmed": None}


async def erase_again(
    subject: Subject,
    factory: Any,
    stores: Sequence[ConversationStore],
    after_seconds: Sequence[float] = SECOND_PASS_AFTER_SECONDS,
) -> None:
    """Erase ``subject`` from the conversation stores and the CRM again at each of
    ``after_seconds`` (what the erasing turn itself wrote back); failures are logged."""
    elapsed = 0.0
    for moment in after_seconds:
        await asyncio.sleep(max(0.0, moment - elapsed))
        elapsed = moment
        try:
            for store in stores:
                await store.erase(subject)

            def crm() -> None:
                with unit_of_work(factory) as session:
                    erase_crm(session, subject)

            await asyncio.to_thread(crm)
        except RapportError as error:
            logger.warning("Erasure second pass failed: %s", type(error).__name__)


def schedule_second_pass(
    subject: Subject, factory: Any, stores: Sequence[ConversationStore]
) -> None:
    """Run :func:`erase_again` on this (the action server's) event loop, after the turn."""
    task = asyncio.get_running_loop().create_task(erase_again(subject, factory, stores))
    _second_passes.add(task)
    task.add_done_callback(_second_passes.discard)


class ActionEraseMyData(Action):
    """Erase the proven customer from every store, answer a receipt, erase again later."""

    def name(self) -> str:
        return "action_erase_my_data"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[dict[str, Any]]:
        events = [SlotSet(slot, None) for slot in (*PROOF_SLOTS, "erasure_confirmed")]
        if tracker.get_slot("erasure_confirmed") is not True:
            return events  # declined (the form said so) or stopped
        try:
            contact = linked_contact(tracker, proven=True)
            if contact is None:
                dispatcher.utter_message(text=NEED_PROOF)
                return events
            settings, factory, secret = _crm()

            def collect() -> Subject:
                with unit_of_work(factory) as session:
                    return collect_subject(session, contact.id)

            subject = await asyncio.to_thread(collect)
            stores = stores_from_settings(settings)
            await asyncio.to_thread(ExportLinks(factory, secret).revoke, contact.id)
            receipt = await erase_contact(factory, contact.id, "customer", secret, stores)
        except RapportError as error:
            tell_crm_failure(dispatcher, error, tracker)
            return events
        schedule_second_pass(subject, factory, stores)
        dispatcher.utter_message(
            text=f"Done: your details, conversations, linked chats and consents are deleted "
            f"(erasure #{receipt.erasure_id}). Orders and returns stay for our accounts, "
            "without your name. Goodbye, and thank you for shopping with us."
        )
        return events
