"""The CRM's tables (SQLAlchemy 1.4 declarative, used 2.0-style).

All timestamps are timezone-aware UTC. Interactions are keyed by the Rasa sender id and
the conversation session's start (``session_key``), so the event log and the actions can
both create one without a race deciding which wins.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import declarative_base, relationship
from sqlalchemy.types import TypeDecorator

Base: Any = declarative_base()


def utcnow() -> datetime:
    """Now, timezone-aware, in UTC."""
    return datetime.now(timezone.utc)


class UtcDateTime(TypeDecorator):
    """A DateTime that always comes back timezone-aware UTC (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use UTC-aware ones")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Contact(Base):
    __tablename__ = "contacts"

    id = Column(Integer, primary_key=True)
    name = Column(String(200), nullable=False)
    email = Column(String(254), unique=True)
    phone = Column(String(32))
    created_at = Column(UtcDateTime, nullable=False, default=utcnow)
    updated_at = Column(UtcDateTime, nullable=False, default=utcnow, onupdate=utcnow)
    # Set while this contact is merged into another (undone by un-merging).
    merged_into_id = Column(Integer, ForeignKey("contacts.id"))

    identities = relationship("ChannelIdentity", back_populates="contact")
    orders = relationship("Order", back_populates="contact", order_by="Order.placed_at.desc()")


class ChannelIdentity(Base):
    """A customer's account on one channel (REST sender, Telegram user, Slack user...)."""

    __tablename__ = "channel_identities"
    __table_args__ = (UniqueConstraint("channel", "external_id", name="uq_identity_channel_ext"),)

    id = Column(Integer, primary_key=True)
    channel = Column(String(50), nullable=False)
    external_id = Column(String(200), nullable=False)
    contact_id = Column(Integer, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False)
    verified_at = Column(UtcDateTime, nullable=False, default=utcnow)
    # How the link was proven: order_email (an order's number and email: the weak level,
    # enough to read that order's status) or a proof of the person (email_code,
    # link_token, shop_token, phone_contact, agent).
    proof = Column(String(20), nullable=False, default="order_email")

    contact = relationship("Contact", back_populates="identities")


class Order(Base):
    __tablename__ = "orders"

    id = Column(Integer, primary_key=True)
    number = Column(String(20), nullable=False, unique=True)
    contact_id = Column(Integer, ForeignKey("contacts.id"), nullable=False, index=True)
    status = Column(String(20), nullable=False)  # processing | shipped | delivered | cancelled
    placed_at = Column(UtcDateTime, nullable=False)
    delivered_at = Column(UtcDateTime)
    expected_delivery = Column(Date)
    carrier = Column(String(50))
    tracking_code = Column(String(80))

    contact = relationship("Contact", back_populates="orders")
    items = relationship("OrderItem", back_populates="order", order_by="OrderItem.id")


class OrderItem(Base):
    __tablename__ = "order_items"

    id = Column(Integer, primary_key=True)
    order_id = Column(Integer, ForeignKey("orders.id", ondelete="CASCADE"), nullable=False)
    sku = Column(String(40), nullable=False)
    name = Column(String(200), nullable=False)
    quantity = Column(Integer, nullable=False, default=1)
    unit_price_cents = Column(Integer, nullable=False)

    order = relationship("Order", back_populates="items")


class Interaction(Base):
    """One conversation session with its transcript: the unit of the CRM timeline."""

    __tablename__ = "interactions"
    __table_args__ = (
        UniqueConstraint("sender_id", "session_key", name="uq_interaction_session"),
        Index("ix_interactions_sender_started", "sender_id", "started_at"),
        # A customer's returns within 72 hours (durable resolution).
        Index("ix_interactions_contact_started", "contact_id", "started_at"),
    )

    id = Column(Integer, primary_key=True)
    sender_id = Column(String(200), nullable=False)
    session_key = Column(String(40), nullable=False)
    channel = Column(String(50))
    contact_id = Column(Integer, ForeignKey("contacts.id"), index=True)
    started_at = Column(UtcDateTime, nullable=False)
    ended_at = Column(UtcDateTime)
    closed = Column(Boolean, nullable=False, default=False)
    outcome = Column(String(30), nullable=False, default="abandoned")
    # The highest outcome an action reported (None: derive one from the transcript).
    reported_outcome = Column(String(30))
    csat = Column(Integer)  # 1-5, asked after a hand-back from an agent
    intents = Column(JSON, nullable=False, default=list)
    summary = Column(Text, nullable=False, default="")
    created_at = Column(UtcDateTime, nullable=False, default=utcnow)
    updated_at = Column(UtcDateTime, nullable=False, default=utcnow, onupdate=utcnow)

    contact = relationship("Contact")
    messages = relationship(
        "InteractionMessage",
        back_populates="interaction",
        order_by="(InteractionMessage.event_ts, InteractionMessage.id)",
    )
    tickets = relationship("Ticket", back_populates="interaction", order_by="Ticket.id")
    returns = relationship(
        "ReturnRequest", back_populates="interaction", order_by="ReturnRequest.id"
    )
    handoffs = relationship("Handoff", back_populates="interaction", order_by="Handoff.id")


class InteractionMessage(Base):
    """One transcript line: what the customer wrote or what the bot (or an agent) sent."""

    __tablename__ = "interaction_messages"
    __table_args__ = (
        Index("ix_messages_interaction_ts", "interaction_id", "event_ts"),
        # Covers the workbench's first-reply and intent counts (read from the index alone).
        Index("ix_messages_insights", "interaction_id", "direction", "event_ts", "intent"),
    )

    id = Column(Integer, primary_key=True)
    interaction_id = Column(
        Integer, ForeignKey("interactions.id", ondelete="CASCADE"), nullable=False
    )
    # Identifies the Rasa event this line came from, so a replay cannot add it twice.
    event_key = Column(String(120), nullable=False, unique=True)
    direction = Column(String(10), nullable=False)  # inbound | outbound
    author = Column(String(100), nullable=False, default="bot")  # customer | bot | agent:<id>
    text = Column(Text, nullable=False, default="")
    intent = Column(String(100))
    confidence = Column(Float)
    buttons = Column(JSON)
    # ISO 639-1 code of a customer's line when the inbound step detected one (e.g. "nl").
    language = Column(String(8))
    event_ts = Column(Float, nullable=False)
    sent_at = Column(UtcDateTime, nullable=False)

    interaction = relationship("Interaction", back_populates="messages")


class Ticket(Base):
    __tablename__ = "tickets"

    id = Column(Integer, primary_key=True)
    category = Column(String(30), nullable=False)
    subject = Column(String(200), nullable=False)
    description = Column(Text, nullable=False, default="")
    status = Column(String(20), nullable=False, default="open")
    contact_id = Column(Integer, ForeignKey("contacts.id"), index=True)
    order_id = Column(Integer, ForeignKey("orders.id"))
    interaction_id = Column(Integer, ForeignKey("interactions.id"), index=True)
    created_at = Column(UtcDateTime, nullable=False, default=utcnow)

    interaction = relationship("Interaction", back_populates="tickets")
    order = relationship("Order")

    @property
    def reference(self) -> str:
        """The reference customers and agents quote, e.g. ``T-000042``."""
        return f"T-{self.id:06d}"


class ReturnRequest(Base):
    __tablename__ = "return_requests"

    id = Column(Integer, primary_key=True)
    order_id = Column(Integer, ForeignKey("orders.id"), nullable=False, index=True)
    contact_id = Column(Integer, ForeignKey("contacts.id"), nullable=False)
    interaction_id = Column(Integer, ForeignKey("interactions.id"), index=True)
    item = Column(String(200), nullable=False)
    reason = Column(Text, nullable=False)
    status = Column(String(20), nullable=False, default="requested")
    created_at = Column(UtcDateTime, nullable=False, default=utcnow)

    interaction = relationship("Interaction", back_populates="returns")
    order = relationship("Order")

    @property
    def reference(self) -> str:
        """The reference customers and agents quote, e.g. ``R-000007``."""
        return f"R-{self.id:06d}"


class Handoff(Base):
    """A conversation handed to a person: who owns it, since when, and how it ended.

    At most one live (queued or agent) handoff exists per conversation; its state is
    what every Rasa instance, connector and agent console consults.
    """

    __tablename__ = "handoffs"
    __table_args__ = (
        Index(
            "uq_handoffs_live_sender",
            "sender_id",
            unique=True,
            sqlite_where=text("state != 'closed'"),
            postgresql_where=text("state != 'closed'"),
        ),
        Index("ix_handoffs_state_requested", "state", "requested_at"),
        Index("ix_handoffs_console_thread", "console_channel", "console_thread"),
    )

    id = Column(Integer, primary_key=True)
    interaction_id = Column(Integer, ForeignKey("interactions.id"), nullable=False, index=True)
    ticket_id = Column(Integer, ForeignKey("tickets.id"))
    sender_id = Column(String(200), nullable=False)
    channel = Column(String(50), nullable=False)
    reason = Column(String(30), nullable=False)
    state = Column(String(10), nullable=False, default="queued")  # queued | agent | closed
    requested_at = Column(UtcDateTime, nullable=False, default=utcnow)
    claimed_at = Column(UtcDateTime)
    handed_back_at = Column(UtcDateTime)
    agent_id = Column(String(100))
    agent_name = Column(String(200))
    outcome = Column(String(30))  # resolved | needs_follow_up | timed_out | cancelled
    csat = Column(Integer)
    # The agent console's message about this handoff (Slack: channel id and message ts).
    console_channel = Column(String(100))
    console_thread = Column(String(100))

    interaction = relationship("Interaction", back_populates="handoffs")
    ticket = relationship("Ticket")


class WorkbenchUser(Base):
    """A trainer or admin of the workbench (created with ``python -m crm_bridge add-user``)."""

    __tablename__ = "workbench_users"

    id = Column(Integer, primary_key=True)
    name = Column(String(80), nullable=False, unique=True)
    role = Column(String(20), nullable=False)  # trainer | admin
    password_hash = Column(String(200), nullable=False)
    disabled = Column(Boolean, nullable=False, default=False)
    created_at = Column(UtcDateTime, nullable=False, default=utcnow)


class InboxReview(Base):
    """A trainer's decision on one customer message from the inbox: at most one each."""

    __tablename__ = "inbox_reviews"

    id = Column(Integer, primary_key=True)
    message_id = Column(
        Integer,
        ForeignKey("interaction_messages.id", ondelete="CASCADE"),
        nullable=False,
        unique=True,
    )
    decision = Column(String(20), nullable=False)  # labelled | out_of_scope | dismissed
    intent = Column(String(100))
    # The training example written for it, already masked (never the raw message).
    example = Column(Text)
    reviewer = Column(String(80), nullable=False)
    decided_at = Column(UtcDateTime, nullable=False, default=utcnow)


class ModelPromotion(Base):
    """One change of the model the Rasa server serves: a promotion, an override or a
    rollback, with who, when, why and the scores that allowed it."""

    __tablename__ = "model_promotions"

    id = Column(Integer, primary_key=True)
    model = Column(String(200), nullable=False)
    previous_model = Column(String(200))
    action = Column(String(20), nullable=False)  # promote | override | rollback
    actor = Column(String(80), nullable=False)
    reason = Column(Text, nullable=False, default="")
    scores = Column(JSON)
    golden = Column(JSON)
    data_commit = Column(String(64))
    created_at = Column(UtcDateTime, nullable=False, default=utcnow)


class OneTimeCode(Base):
    """An emailed code that proves a channel identity owns a contact's address.

    Only a hash of the code is stored; a code is single use, expires, and locks its
    channel identity out for a while after too many wrong tries.
    """

    __tablename__ = "one_time_codes"
    __table_args__ = (Index("ix_codes_identity", "channel", "external_id", "created_at"),)

    id = Column(Integer, primary_key=True)
    contact_id = Column(Integer, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False)
    channel = Column(String(50), nullable=False)
    external_id = Column(String(200), nullable=False)
    code_hash = Column(String(200), nullable=False)
    created_at = Column(UtcDateTime, nullable=False, default=utcnow)
    expires_at = Column(UtcDateTime, nullable=False)
    attempts = Column(Integer, nullable=False, default=0)
    used_at = Column(UtcDateTime)
    locked_until = Column(UtcDateTime)


class LinkToken(Base):
    """A signed, single-use, expiring link that proves a contact (made from the CRM)."""

    __tablename__ = "link_tokens"

    id = Column(Integer, primary_key=True)
    contact_id = Column(Integer, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False)
    # SHA-256 of the token's random part: the token itself is never stored.
    token_hash = Column(String(64), nullable=False, unique=True)
    created_at = Column(UtcDateTime, nullable=False, default=utcnow)
    expires_at = Column(UtcDateTime, nullable=False)
    used_at = Column(UtcDateTime)
    used_by = Column(String(260))  # channel:external_id that redeemed it


class Consent(Base):
    """One consent decision: a contact opted in or out of a topic on a channel.

    Rows are never updated: the newest row per (contact, topic, channel) is the state,
    and the history says when, where and with which wording each decision was taken.
    """

    __tablename__ = "consents"
    __table_args__ = (
        Index("ix_consents_contact_topic", "contact_id", "topic", "channel", "recorded_at"),
    )

    id = Column(Integer, primary_key=True)
    contact_id = Column(Integer, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False)
    topic = Column(String(40), nullable=False)  # order_updates | offers | newsletter
    channel = Column(String(50), nullable=False)  # a channel name, or "*" for all
    granted = Column(Boolean, nullable=False)
    wording = Column(Text, nullable=False)
    source = Column(String(50), nullable=False, default="chat")  # chat | cli | import
    recorded_at = Column(UtcDateTime, nullable=False, default=utcnow)


class ContactMerge(Base):
    """One merge of a contact into another: who, when, why, and exactly which rows moved,
    so that un-merging moves those rows back."""

    __tablename__ = "contact_merges"

    id = Column(Integer, primary_key=True)
    source_contact_id = Column(Integer, ForeignKey("contacts.id"), nullable=False)
    target_contact_id = Column(Integer, ForeignKey("contacts.id"), nullable=False)
    actor = Column(String(100), nullable=False)
    reason = Column(Text, nullable=False)
    moved = Column(JSON, nullable=False, default=dict)  # table name -> list of row ids
    merged_at = Column(UtcDateTime, nullable=False, default=utcnow)
    undone_at = Column(UtcDateTime)
    undone_by = Column(String(100))
    undo_reason = Column(Text)


class Erasure(Base):
    """The minimal record an erasure keeps: when, by whom, a keyed hash of who, and what
    each store removed (counts only)."""

    __tablename__ = "erasures"

    id = Column(Integer, primary_key=True)
    subject_hash = Column(String(64), nullable=False, index=True)
    actor = Column(String(100), nullable=False)  # "customer" or an operator's name
    receipt = Column(JSON, nullable=False, default=dict)  # store -> what was removed
    erased_at = Column(UtcDateTime, nullable=False, default=utcnow)


class Notification(Base):
    """One proactive message to one contact on one channel: decided by ``can_send``,
    retried with back-off, never dropped silently."""

    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("reference", "channel", "external_id", name="uq_notification_ref"),
        Index("ix_notifications_due", "status", "next_attempt_at"),
    )

    id = Column(Integer, primary_key=True)
    contact_id = Column(Integer, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False)
    topic = Column(String(40), nullable=False)
    channel = Column(String(50), nullable=False)
    external_id = Column(String(200), nullable=False)
    # What the message is about, e.g. "order:10001:shipped": sent once per recipient.
    reference = Column(String(200), nullable=False)
    text = Column(Text, nullable=False)
    status = Column(String(20), nullable=False, default="pending")  # pending|sent|waiting|failed
    attempts = Column(Integer, nullable=False, default=0)
    next_attempt_at = Column(UtcDateTime, nullable=False, default=utcnow)
    last_error = Column(String(300))
    created_at = Column(UtcDateTime, nullable=False, default=utcnow)
    sent_at = Column(UtcDateTime)


def as_date(value: date | datetime | None) -> date | None:
    """A date from a date or datetime (None stays None)."""
    if isinstance(value, datetime):
        return value.date()
    return value


class ExportToken(Base):
    """A single-use, expiring download link for a customer's data export (asked for in
    a chat, ``crm_bridge.export_links``). Holds no personal data: the export is built
    when the link is opened."""

    __tablename__ = "export_tokens"

    id = Column(Integer, primary_key=True)
    contact_id = Column(Integer, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False)
    # SHA-256 of the token's random part: the token itself is never stored.
    token_hash = Column(String(64), nullable=False, unique=True)
    created_at = Column(UtcDateTime, nullable=False, default=utcnow)
    expires_at = Column(UtcDateTime, nullable=False)
    used_at = Column(UtcDateTime)


class OutboxEvent(Base):
    """One write to mirror in the remote CRM (``CRM_BACKEND``), recorded in the same
    transaction as the local write and delivered by the outbox worker
    (``crm_bridge.outbox``), in order per contact."""

    __tablename__ = "outbox_events"
    __table_args__ = (
        Index("ix_outbox_due", "status", "next_attempt_at"),
        # "Is an older event of this contact still undelivered?" (per-contact order).
        Index("ix_outbox_contact", "contact_id", "id"),
    )

    id = Column(Integer, primary_key=True)
    backend = Column(String(20), nullable=False)  # hubspot | salesforce
    kind = Column(String(30), nullable=False)  # crm_bridge.remote.base.EventKind
    contact_id = Column(Integer, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False)
    # The local record it is about (contact:3, ticket:7, interaction:42): the remote
    # write's idempotency key.
    key = Column(String(100), nullable=False)
    # What the remote record needs; emptied once delivered or dropped (it holds personal
    # data that the remote CRM now has, or that nobody will send).
    payload = Column(JSON, nullable=False, default=dict)
    status = Column(String(10), nullable=False, default="pending")
    attempts = Column(Integer, nullable=False, default=0)
    next_attempt_at = Column(UtcDateTime, nullable=False, default=utcnow)
    last_error = Column(String(300))  # the error's kind and message, never personal data
    created_at = Column(UtcDateTime, nullable=False, default=utcnow)
    delivered_at = Column(UtcDateTime)
    # A worker delivering it holds it until then; after a crash another one takes over.
    lease_until = Column(UtcDateTime)
    lease_owner = Column(String(64))
    dropped_by = Column(String(100))  # the operator who dropped a parked event
    dropped_at = Column(UtcDateTime)


class RemoteRef(Base):
    """The id a remote CRM gave a local record (``contact:3`` -> HubSpot contact 501),
    so a retried write updates that record instead of creating a second one."""

    __tablename__ = "remote_refs"
    __table_args__ = (UniqueConstraint("backend", "key", name="uq_remote_ref"),)

    id = Column(Integer, primary_key=True)
    backend = Column(String(20), nullable=False)
    key = Column(String(100), nullable=False)
    remote_id = Column(String(100), nullable=False)
    created_at = Column(UtcDateTime, nullable=False, default=utcnow)
