"""The typed interface that actions (and later connectors) use to talk to the CRM.

Only plain, immutable view objects cross this boundary, never ORM rows, so callers
cannot lazily load or accidentally mutate database state. The SQL implementation lives
in :mod:`crm_bridge.sql_gateway`; HubSpot/Salesforce gateways can implement the same
protocol later.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol


class Outcome(str, enum.Enum):
    """How a conversation (Interaction) ended, from least to most significant."""

    ABANDONED = "abandoned"
    RESOLVED_BY_BOT = "resolved_by_bot"
    TICKET_CREATED = "ticket_created"
    HANDED_OFF = "handed_off"

    @property
    def rank(self) -> int:
        """Higher ranks win when several outcomes were recorded in one session."""
        return list(Outcome).index(self)


class TicketCategory(str, enum.Enum):
    """What a ticket is about."""

    COMPLAINT = "complaint"
    DELIVERY = "delivery"
    RETURN = "return"
    CANCELLATION = "cancellation"
    HUMAN_REQUEST = "human_request"
    OTHER = "other"


@dataclass(frozen=True)
class ConversationRef:
    """Identifies one conversation session: the Rasa sender id plus the session start.

    ``session_started_at`` is the Unix timestamp of the session's ``session_started``
    event (or of its first event when sessions are disabled). Together with
    ``sender_id`` it is the key of an Interaction, so actions and the event log agree on
    which Interaction a ticket belongs to, whichever of them writes first.
    """

    sender_id: str
    channel: str
    session_started_at: float

    @classmethod
    def from_events(
        cls, sender_id: str, channel: str, events: Sequence[Mapping[str, Any]]
    ) -> ConversationRef:
        """The current session of a conversation given as Rasa's event dicts."""
        started_at = None
        for event in reversed(events):
            if event.get("event") == "session_started":
                started_at = event.get("timestamp")
                break
        if started_at is None and events:
            started_at = events[0].get("timestamp")
        return cls(sender_id, channel, float(started_at if started_at is not None else time.time()))


@dataclass(frozen=True)
class ContactView:
    id: int
    name: str
    email: str | None
    phone: str | None


@dataclass(frozen=True)
class OrderItemView:
    sku: str
    name: str
    quantity: int
    unit_price_cents: int


@dataclass(frozen=True)
class OrderView:
    number: str
    contact_id: int
    status: str  # processing | shipped | delivered | cancelled
    placed_at: datetime
    expected_delivery: date | None
    carrier: str | None
    tracking_code: str | None
    items: tuple[OrderItemView, ...] = field(default_factory=tuple)
    total_cents: int = 0
    delivered_at: datetime | None = None


@dataclass(frozen=True)
class TicketView:
    id: int
    reference: str  # human-facing, e.g. "T-000042"
    category: TicketCategory
    subject: str
    status: str  # open | closed


@dataclass(frozen=True)
class ReturnView:
    id: int
    reference: str  # human-facing, e.g. "R-000007"
    order_number: str
    item: str
    reason: str
    status: str  # requested | approved | rejected | refunded


class CrmGateway(Protocol):
    """What the bot may ask of the CRM. Every method commits its own unit of work.

    Implementations raise only :class:`crm_bridge.errors.RapportError` subclasses:
    ``CrmUnavailable`` when the backend is down, ``InvalidInput`` for bad values,
    ``OrderNotFound`` / ``ContactNotFound`` for lookups that find nothing visible.
    """

    def find_contact_by_identity(
        self, channel: str, external_id: str, proven: bool = False
    ) -> ContactView | None:
        """The contact linked to this channel identity, or None when unlinked (or, with
        ``proven``, when the link only rests on an order's number and email)."""

    def get_contact(self, contact_id: int) -> ContactView:
        """The contact with this id; ``ContactNotFound`` otherwise."""

    def find_contact_by_email(self, email: str) -> ContactView | None:
        """The contact with this email (any case), or None."""

    def find_contact_by_phone(self, phone: str) -> ContactView | None:
        """The one contact with this phone number, or None."""

    def link_identity(
        self,
        channel: str,
        external_id: str,
        contact_id: int,
        conversation: ConversationRef | None = None,
        proof: str = "order_email",
    ) -> None:
        """Link a channel identity to a contact (idempotent), proven by ``proof`` (see
        ``crm_bridge.identity_links``; a weaker proof never downgrades a link).

        When ``conversation`` is given, its Interaction is attributed to the contact too.
        """

    def get_order_for_contact(self, contact_id: int, order_number: str) -> OrderView:
        """The contact's own order with that number; ``OrderNotFound`` otherwise."""

    def verify_order_email(self, order_number: str, email: str) -> OrderView:
        """The order if ``email`` (any case) is its contact's; ``OrderNotFound`` otherwise."""

    def list_orders(self, contact_id: int, limit: int = 5) -> list[OrderView]:
        """The contact's most recent orders, newest first."""

    def open_ticket(
        self,
        conversation: ConversationRef,
        category: TicketCategory,
        subject: str,
        description: str,
        contact_id: int | None = None,
        order_number: str | None = None,
    ) -> TicketView:
        """Create a ticket linked to the conversation's Interaction (created if missing)."""

    def create_return(
        self,
        conversation: ConversationRef,
        contact_id: int,
        order_number: str,
        item: str,
        reason: str,
    ) -> ReturnView:
        """Create a return/refund request for one of the contact's orders."""

    def update_contact_details(
        self, contact_id: int, email: str | None = None, phone: str | None = None
    ) -> ContactView:
        """Validate and store a new email and/or phone; ``InvalidInput`` names the bad field."""
