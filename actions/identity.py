"""Who the customer is: taken from the channel identity linked to the sender.

Never from slot text alone. A customer becomes linked to a contact by knowing an order's
number together with the email on it (enough to read that order's status) or by a proof
of the person (``crm_bridge.identity_proof``), which changing data requires.
"""

from __future__ import annotations

from rasa_sdk import Tracker

from actions.crm import get_gateway
from crm_bridge.gateway import ContactView, ConversationRef
from crm_bridge.identity_proof import Identity

DEFAULT_CHANNEL = "rest"


def channel_of(tracker: Tracker) -> str:
    """The channel the customer is writing from."""
    return tracker.get_latest_input_channel() or DEFAULT_CHANNEL


def conversation_ref(tracker: Tracker) -> ConversationRef:
    """The current conversation session, as the CRM's interaction log keys it."""
    return ConversationRef.from_events(tracker.sender_id, channel_of(tracker), tracker.events)


def linked_contact(tracker: Tracker, proven: bool = False) -> ContactView | None:
    """The contact linked to this sender on this channel, or None (raises RapportError).

    With ``proven``, only a link proven beyond an order's number and email counts.
    """
    return get_gateway().find_contact_by_identity(
        channel_of(tracker), tracker.sender_id, proven=proven
    )


def identity_of(tracker: Tracker) -> Identity:
    """Who is chatting, for the identity proofs."""
    return Identity(channel_of(tracker), tracker.sender_id, conversation_ref(tracker))
