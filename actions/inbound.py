"""What the inbound step (connectors/inbound.py) tells the assistant about a message.

For bad input the step sends an intent shortcut (``/inbound_too_long`` ...) instead of the
text; the customer's own (normalised, maybe truncated) words travel in the metadata:
``{"inbound": {"text", "verdict", "language", "max_chars"}}``.
"""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

DEFAULT_MAX_CHARS = 4096


def inbound_info(message: dict[str, Any] | None) -> dict[str, Any]:
    """The inbound step's metadata of a user message or event (empty when absent)."""
    info = ((message or {}).get("metadata") or {}).get("inbound")
    return info if isinstance(info, dict) else {}


def customer_text(message: dict[str, Any] | None) -> str:
    """The customer's words: the inbound step's text when present, else the message text."""
    text = inbound_info(message).get("text")
    if not isinstance(text, str) or not text.strip():
        text = (message or {}).get("text")
    return str(text or "").strip()


def reply_too_long(dispatcher: CollectingDispatcher, tracker: Tracker) -> None:
    """Ask for a shorter message, naming the limit."""
    try:
        limit = int(inbound_info(tracker.latest_message).get("max_chars") or DEFAULT_MAX_CHARS)
    except (TypeError, ValueError):
        limit = DEFAULT_MAX_CHARS
    dispatcher.utter_message(
        text=f"Sorry, that message is too long for me. Could you say it more briefly, "
        f"in under {limit} characters?"
    )


class ActionReplyTooLong(Action):
    """The message was longer than the channel's limit."""

    def name(self) -> str:
        return "action_reply_too_long"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[dict[str, Any]]:
        reply_too_long(dispatcher, tracker)
        return []
