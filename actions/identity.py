"""Who the customer is: taken from the channel identity linked to the sender.

Never from slot text alone: a customer becomes linked to a contact only by proving an
order's number together with the email on it.
"""

from __future__ import annotations

import time

from rasa_sdk import Tracker

from actions.crm import get_gateway
from crm_bridge.gateway import ContactView, ConversationRef

DEFAULT_CHANNEL = "rest"


def channel_of(tracker: Tracker) -> str:
    """The channel the customer is writing from."""
    return tracker.get_latest_input_channel() or DEFAULT_CHANNEL


def conversation_ref(tracker: Tracker) -> ConversationRef:
    """The current conversation session, as the CRM's interaction log keys it."""
    started_at = None
    for event in reversed(tracker.events):
        if event.get("event") == "session_started":
            started_at = event.get("timestamp")
            break
    if started_at is None and tracker.events:
        started_at = tracker.events[0].get("timestamp")
    return ConversationRef(
        sender_id=tracker.sender_id,
        channel=channel_of(tracker),
        session_started_at=float(started_at if started_at is not None else time.time()),
    )


def linked_contact(tracker: Tracker) -> ContactView | None:
    """The contact linked to this sender on this channel, or None (raises RapportError)."""
    return get_gateway().find_contact_by_identity(channel_of(tracker), tracker.sender_id)
