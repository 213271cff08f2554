"""The CRM gateway on an SQL database (SQLite by default, PostgreSQL in production)."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from crm_bridge import models
from crm_bridge.db import session_factory, unit_of_work
from crm_bridge.errors import ContactNotFound, InvalidInput, OrderNotFound, ReturnNotAllowed
from crm_bridge.gateway import (
    ContactView,
    ConversationRef,
    OrderItemView,
    OrderView,
    ReturnView,
    TicketCategory,
    TicketView,
)
from crm_bridge.identity_links import ORDER_EMAIL, find_identity, is_proven, link
from crm_bridge.models import utcnow
from crm_bridge.outbox_payloads import (
    open_contact_upsert,
    record_contact,
    record_return,
    record_ticket,
    settle_contact_upsert,
)
from crm_bridge.remote.base import EventKind
from crm_bridge.rules import return_block, today
from crm_bridge.validation import normalise_email, normalise_order_number, normalise_phone

MAX_SUBJECT_CHARS = 200
MAX_TEXT_CHARS = 5000


def session_key(started_at: float) -> str:
    """The string form of a session start used in Interaction keys (microsecond precision)."""
    return f"{started_at:.6f}"


def get_or_create_interaction(
    session: Session, sender_id: str, started_at: float, channel: str | None = None
) -> models.Interaction:
    """The Interaction of one conversation session, created if this is its first writer.

    Concurrent writers (the event log and an action) may both try to create it; the
    unique key makes one of them lose, and the loser reads the winner's row.
    """
    key = session_key(started_at)
    query = select(models.Interaction).where(
        models.Interaction.sender_id == sender_id, models.Interaction.session_key == key
    )
    found = session.execute(query).scalar_one_or_none()
    if found is not None:
        return found
    interaction = models.Interaction(
        sender_id=sender_id,
        session_key=key,
        channel=channel,
        started_at=datetime.fromtimestamp(started_at, timezone.utc),
        ended_at=datetime.fromtimestamp(started_at, timezone.utc),
        intents=[],
        summary="",
        outcome="abandoned",
        closed=False,
    )
    try:
        with session.begin_nested():
            session.add(interaction)
            session.flush()
    except IntegrityError:
        return session.execute(query).scalar_one()
    return interaction


def contact_view(contact: models.Contact) -> ContactView:
    return ContactView(id=contact.id, name=contact.name, email=contact.email, phone=contact.phone)


def order_view(order: models.Order) -> OrderView:
    items = tuple(
        OrderItemView(
            sku=item.sku,
            name=item.name,
            quantity=item.quantity,
            unit_price_cents=item.unit_price_cents,
        )
        for item in order.items
    )
    return OrderView(
        number=order.number,
        contact_id=order.contact_id,
        status=order.status,
        placed_at=order.placed_at,
        expected_delivery=order.expected_delivery,
        carrier=order.carrier,
        tracking_code=order.tracking_code,
        items=items,
        total_cents=sum(item.quantity * item.unit_price_cents for item in items),
        delivered_at=order.delivered_at,
    )


def _clean_text(field: str, value: str, limit: int) -> str:
    text = (value or "").strip()
    if not text:
        raise InvalidInput(field, f"The {field.replace('_', ' ')} cannot be empty.")
    return text[:limit]


class SqlCrmGateway:
    """:class:`crm_bridge.gateway.CrmGateway` on SQLAlchemy; one unit of work per call.

    With ``outbox_backend`` naming a remote CRM (``CRM_BACKEND``), linked contacts, new
    contact details, tickets and returns are also recorded in its outbox, in the same
    unit of work (``crm_bridge.outbox``).
    """

    def __init__(self, factory: sessionmaker, outbox_backend: str | None = None) -> None:
        self._factory = factory
        self._outbox = outbox_backend

    @classmethod
    def from_url(cls, url: str, outbox_backend: str | None = None) -> SqlCrmGateway:
        """A gateway on the database at ``url`` (engines are shared per URL)."""
        return cls(session_factory(url), outbox_backend)

    def find_contact_by_identity(
        self, channel: str, external_id: str, proven: bool = False
    ) -> ContactView | None:
        with unit_of_work(self._factory) as session:
            identity = find_identity(session, channel, external_id)
            if identity is None or (proven and not is_proven(identity.proof)):
                return None
            return contact_view(identity.contact)

    def find_contact_by_email(self, email: str) -> ContactView | None:
        """The contact whose email this is (any case), or None; ``InvalidInput`` when it
        is not an email address."""
        address = normalise_email(email)
        with unit_of_work(self._factory) as session:
            contact = session.execute(
                select(models.Contact).where(func.lower(models.Contact.email) == address)
            ).scalar_one_or_none()
            return contact_view(contact) if contact else None

    def find_contact_by_phone(self, phone: str) -> ContactView | None:
        """The one contact with this phone number, or None (also when several share it:
        a shared number proves nobody); ``InvalidInput`` when it is not a phone number."""
        number = normalise_phone(phone)
        with unit_of_work(self._factory) as session:
            contacts = (
                session.execute(
                    select(models.Contact).where(models.Contact.phone == number).limit(2)
                )
                .scalars()
                .all()
            )
            return contact_view(contacts[0]) if len(contacts) == 1 else None

    def get_contact(self, contact_id: int) -> ContactView:
        """The contact with this id; ``ContactNotFound`` otherwise."""
        with unit_of_work(self._factory) as session:
            contact = session.get(models.Contact, contact_id)
            if contact is None:
                raise ContactNotFound(f"No contact {contact_id}.")
            return contact_view(contact)

    def link_identity(
        self,
        channel: str,
        external_id: str,
        contact_id: int,
        conversation: ConversationRef | None = None,
        proof: str = ORDER_EMAIL,
    ) -> None:
        with unit_of_work(self._factory) as session:
            if session.get(models.Contact, contact_id) is None:
                raise ContactNotFound(f"No contact {contact_id}.")
            before = find_identity(session, channel, external_id)
            owner_before = before.contact_id if before is not None else None
            upsert = open_contact_upsert(session, self._outbox, contact_id)
            identity = link(session, channel, external_id, contact_id, proof, utcnow())
            # A new link, or one moved to another contact: not a repeated one.
            changed = identity.contact_id != owner_before
            settle_contact_upsert(session, upsert, identity.contact_id, changed)
            if conversation is not None:
                interaction = get_or_create_interaction(
                    session,
                    conversation.sender_id,
                    conversation.session_started_at,
                    conversation.channel,
                )
                interaction.contact_id = identity.contact_id  # after merges, the owner

    def get_order_for_contact(self, contact_id: int, order_number: str) -> OrderView:
        number = normalise_order_number(order_number)
        with unit_of_work(self._factory) as session:
            order = self._order(session, number)
            if order is None or order.contact_id != contact_id:
                raise OrderNotFound(f"No order {number} for this customer.")
            return order_view(order)

    def verify_order_email(self, order_number: str, email: str) -> OrderView:
        number = normalise_order_number(order_number)
        address = normalise_email(email)
        with unit_of_work(self._factory) as session:
            order = self._order(session, number)
            if order is None or (order.contact.email or "").lower() != address:
                raise OrderNotFound(f"No order {number} with that email.")
            return order_view(order)

    def list_orders(self, contact_id: int, limit: int = 5) -> list[OrderView]:
        with unit_of_work(self._factory) as session:
            orders = session.execute(
                select(models.Order)
                .where(models.Order.contact_id == contact_id)
                .order_by(models.Order.placed_at.desc())
                .limit(limit)
            ).scalars()
            return [order_view(order) for order in orders]

    def open_ticket(
        self,
        conversation: ConversationRef,
        category: TicketCategory,
        subject: str,
        description: str,
        contact_id: int | None = None,
        order_number: str | None = None,
    ) -> TicketView:
        subject = _clean_text("subject", subject, MAX_SUBJECT_CHARS)
        description = (description or "").strip()[:MAX_TEXT_CHARS]
        with unit_of_work(self._factory) as session:
            order = self._order(session, order_number) if order_number else None
            if order is not None and contact_id is not None and order.contact_id != contact_id:
                order = None  # never attach another customer's order
            interaction = get_or_create_interaction(
                session,
                conversation.sender_id,
                conversation.session_started_at,
                conversation.channel,
            )
            if contact_id is not None and interaction.contact_id is None:
                interaction.contact_id = contact_id
            ticket = models.Ticket(
                category=TicketCategory(category).value,
                subject=subject,
                description=description,
                contact_id=contact_id,
                order_id=order.id if order else None,
                interaction_id=interaction.id,
            )
            session.add(ticket)
            session.flush()
            record_ticket(session, self._outbox, ticket, interaction.contact_id)
            return TicketView(
                id=ticket.id,
                reference=ticket.reference,
                category=TicketCategory(ticket.category),
                subject=ticket.subject,
                status=ticket.status,
            )

    def create_return(
        self,
        conversation: ConversationRef,
        contact_id: int,
        order_number: str,
        item: str,
        reason: str,
    ) -> ReturnView:
        item = _clean_text("item", item, 200)
        reason = _clean_text("reason", reason, MAX_TEXT_CHARS)
        number = normalise_order_number(order_number)
        with unit_of_work(self._factory) as session:
            order = self._order(session, number)
            if order is None or order.contact_id != contact_id:
                raise OrderNotFound(f"No order {number} for this customer.")
            block = return_block(order.status, order.delivered_at, today())
            if block is not None:
                raise ReturnNotAllowed(number, block.value)
            interaction = get_or_create_interaction(
                session,
                conversation.sender_id,
                conversation.session_started_at,
                conversation.channel,
            )
            if interaction.contact_id is None:
                interaction.contact_id = contact_id
            request = models.ReturnRequest(
                order_id=order.id,
                contact_id=contact_id,
                interaction_id=interaction.id,
                item=item,
                reason=reason,
            )
            session.add(request)
            session.flush()
            record_return(session, self._outbox, request)
            return ReturnView(
                id=request.id,
                reference=request.reference,
                order_number=number,
                item=request.item,
                reason=request.reason,
                status=request.status,
            )

    def update_contact_details(
        self, contact_id: int, email: str | None = None, phone: str | None = None
    ) -> ContactView:
        new_email = normalise_email(email) if email is not None else None
        new_phone = normalise_phone(phone) if phone is not None else None
        with unit_of_work(self._factory) as session:
            contact = session.get(models.Contact, contact_id)
            if contact is None:
                raise ContactNotFound(f"No contact {contact_id}.")
            if new_email is not None and new_email != contact.email:
                taken = session.execute(
                    select(func.count())
                    .select_from(models.Contact)
                    .where(models.Contact.email == new_email, models.Contact.id != contact_id)
                ).scalar_one()
                if taken:
                    raise InvalidInput(
                        "email", "That email address can't be used for this account."
                    )
                contact.email = new_email
            if new_phone is not None:
                contact.phone = new_phone
            session.flush()
            record_contact(session, self._outbox, EventKind.CONTACT_UPDATED, contact_id)
            return contact_view(contact)

    @staticmethod
    def _order(session: Session, number: str | None) -> models.Order | None:
        if not number:
            return None
        return session.execute(
            select(models.Order).where(models.Order.number == number)
        ).scalar_one_or_none()
