"""Erasure: remove a contact, and everything that names them, from every store.

The use case (:func:`erase_contact`) finds the contact, collects what identifies them
(name, email, phone, the Rasa sender ids of their channel identities and interactions),
asks each conversation store outside the CRM to forget those senders, and finally
erases the CRM side in one unit of work that also writes the minimal
:class:`crm_bridge.models.Erasure` record: when, by whom, a keyed hash of who, and the
counts of the receipt. The CRM comes last on purpose: if Redis or RabbitMQ fails, the
contact is still there and the same command can be run again (every step is idempotent).

The stores outside the CRM (Rasa's trackers, Redis, RabbitMQ) are in
``crm_bridge.conversation_stores``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from crm_bridge import models
from crm_bridge.conversation_stores import (
    ConversationStore,
    StoreReport,
    Subject,
    rowcount,
    stores_from_settings,
)
from crm_bridge.db import unit_of_work
from crm_bridge.errors import ContactNotFound, InvalidInput, RapportError, Unavailable
from crm_bridge.validation import normalise_email

__all__ = [
    "ERASED",
    "ERASED_NAME",
    "ErasureIncomplete",
    "Receipt",
    "StoreReport",
    "Subject",
    "collect_subject",
    "erase_contact",
    "erase_crm",
    "stores_from_settings",
    "subject_hash",
]

logger = logging.getLogger(__name__)

# What replaces personal text on rows the business keeps (tickets, returns).
ERASED = "(erased)"
ERASED_NAME = "Erased contact"


class ErasureIncomplete(Unavailable):
    """A store could not be erased; the CRM was left untouched so the erasure can be
    run again. ``reports`` says what the stores before it removed."""

    def __init__(self, message: str, reports: Sequence[StoreReport]) -> None:
        super().__init__(message)
        self.reports = tuple(reports)


@dataclass(frozen=True)
class Receipt:
    """The outcome of one erasure, one report per store (CRM last)."""

    erasure_id: int
    subject_hash: str
    actor: str
    erased_at: datetime
    stores: tuple[StoreReport, ...]

    def lines(self) -> list[str]:
        """The receipt as printed: a heading, then one line per store."""
        when = self.erased_at.strftime("%Y-%m-%d %H:%M:%S UTC")
        head = f"Erasure #{self.erasure_id} by {self.actor} at {when}"
        return [head, *(f"  {report.line()}" for report in self.stores)]


def subject_hash(secret: bytes, hash_input: str) -> str:
    """HMAC-SHA256 (hex) of the subject: an erasure can later be checked ("was this
    address erased?") by whoever holds the identity secret, and by nobody else."""
    return hmac.new(secret, hash_input.encode(), hashlib.sha256).hexdigest()


def find_contact(session: Session, ref: int | str) -> models.Contact:
    """The contact with this id or email; ``ContactNotFound`` otherwise."""
    text = str(ref).strip()
    if text.isdigit():
        contact = session.get(models.Contact, int(text))
    elif "@" in text:
        contact = session.execute(
            select(models.Contact).where(models.Contact.email == text.lower())
        ).scalar_one_or_none()
    else:
        raise InvalidInput("contact", "Give a contact id or an email address.")
    if contact is None:
        raise ContactNotFound("No contact matches.")
    return contact


def _normalised(email: str) -> str:
    try:
        return normalise_email(email)
    except InvalidInput:
        return email.strip().lower()  # an old row that fails today's check


def collect_subject(session: Session, ref: int | str) -> Subject:
    """The contact ``ref`` (id or email), the contacts merged into it, and every
    identifier of theirs that the stores may hold."""
    main = find_contact(session, ref)
    contacts = [main]
    while True:  # contacts merged into one already collected are the same person
        ids = [c.id for c in contacts]
        more = session.execute(
            select(models.Contact).where(
                models.Contact.merged_into_id.in_(ids), models.Contact.id.notin_(ids)
            )
        ).scalars()
        found = list(more)
        if not found:
            break
        contacts.extend(found)
    ids = [c.id for c in contacts]
    senders = set(
        session.execute(
            select(models.ChannelIdentity.external_id).where(
                models.ChannelIdentity.contact_id.in_(ids)
            )
        ).scalars()
    )
    senders |= set(
        session.execute(
            select(models.Interaction.sender_id).where(models.Interaction.contact_id.in_(ids))
        ).scalars()
    )
    for model in (models.OneTimeCode, models.Notification):
        senders |= set(
            session.execute(select(model.external_id).where(model.contact_id.in_(ids))).scalars()
        )
    used_by = session.execute(
        select(models.LinkToken.used_by).where(
            models.LinkToken.contact_id.in_(ids), models.LinkToken.used_by.is_not(None)
        )
    ).scalars()
    senders |= {value.partition(":")[2] for value in used_by if ":" in value}
    return Subject(
        contact_id=main.id,
        contact_ids=frozenset(ids),
        hash_input=_normalised(main.email) if main.email else f"contact:{main.id}",
        sender_ids=frozenset(sender for sender in senders if sender),
        emails=frozenset(_normalised(c.email) for c in contacts if c.email),
        phones=frozenset(c.phone for c in contacts if c.phone),
        names=frozenset(c.name for c in contacts if c.name and c.name != ERASED_NAME),
    )


def _bulk(session: Session, statement: Any) -> int:
    """Run a bulk DELETE/UPDATE; the rows it touches are not loaded in this session."""
    return rowcount(session.execute(statement.execution_options(synchronize_session=False)))


def _redact(text: str, needles: Iterable[str]) -> str:
    for needle in needles:
        text = re.sub(re.escape(needle), "[erased]", text, flags=re.IGNORECASE)
    return text


def erase_crm(session: Session, subject: Subject) -> StoreReport:
    """Erase the CRM side of ``subject`` inside the caller's unit of work.

    Rows about the person are deleted; rows the business must keep (tickets, returns,
    orders) lose their personal text and their link to the conversations. The contact
    row is anonymised, not deleted: orders and returns reference it NOT NULL and are
    accounting records, so it stays as their anonymous owner (id and dates only).
    """
    M = models  # short: every statement below names several models
    ids, senders = subject.contact_ids, subject.sender_ids
    # A sender's conversations are theirs unless linked to a different contact.
    interaction_ids = list(
        session.execute(
            select(M.Interaction.id).where(
                or_(
                    M.Interaction.contact_id.in_(ids),
                    M.Interaction.sender_id.in_(senders)
                    & (M.Interaction.contact_id.is_(None) | M.Interaction.contact_id.in_(ids)),
                )
            )
        ).scalars()
    )
    message_ids = select(M.InteractionMessage.id).where(
        M.InteractionMessage.interaction_id.in_(interaction_ids)
    )
    of_contact_or_sender = {
        M.OneTimeCode: M.OneTimeCode.external_id.in_(senders),
        M.Notification: M.Notification.external_id.in_(senders),
    }
    done: dict[str, int] = {}
    done["inbox reviews"] = _bulk(
        session, delete(M.InboxReview).where(M.InboxReview.message_id.in_(message_ids))
    )
    done["handoffs"] = _bulk(
        session,
        delete(M.Handoff).where(
            M.Handoff.interaction_id.in_(interaction_ids) | M.Handoff.sender_id.in_(senders)
        ),
    )
    done["tickets anonymised"] = _bulk(
        session,
        update(M.Ticket)
        .where(M.Ticket.contact_id.in_(ids) | M.Ticket.interaction_id.in_(interaction_ids))
        .values(subject=ERASED, description="", contact_id=None, interaction_id=None),
    )
    done["returns anonymised"] = _bulk(
        session,
        update(M.ReturnRequest)
        .where(
            M.ReturnRequest.contact_id.in_(ids)
            | M.ReturnRequest.interaction_id.in_(interaction_ids),
            # Counted once: a second erasure finds them already anonymised.
            (M.ReturnRequest.reason != ERASED) | M.ReturnRequest.interaction_id.is_not(None),
        )
        .values(reason=ERASED, interaction_id=None),
    )
    done["transcript lines"] = _bulk(
        session,
        delete(M.InteractionMessage).where(
            M.InteractionMessage.interaction_id.in_(interaction_ids)
        ),
    )
    done["interactions"] = _bulk(
        session, delete(M.Interaction).where(M.Interaction.id.in_(interaction_ids))
    )
    for label, model in (
        ("one-time codes", M.OneTimeCode),
        ("link tokens", M.LinkToken),
        ("export links", M.ExportToken),
        # Pending writes to a remote CRM carry the person's details and transcripts.
        ("outbox events", M.OutboxEvent),
        ("consents", M.Consent),
        ("notifications", M.Notification),
        ("identities", M.ChannelIdentity),
    ):
        condition = model.contact_id.in_(ids)
        if model in of_contact_or_sender:
            condition = condition | of_contact_or_sender[model]
        done[label] = _bulk(session, delete(model).where(condition))
    # A merge's reason is an operator's free text, which may name the person.
    done["merge notes"] = _bulk(
        session,
        update(M.ContactMerge)
        .where(
            M.ContactMerge.source_contact_id.in_(ids) | M.ContactMerge.target_contact_id.in_(ids),
            (M.ContactMerge.reason != ERASED) | M.ContactMerge.undo_reason.is_not(None),
        )
        .values(reason=ERASED, undo_reason=None),
    )
    done["mentions redacted"] = _redact_mentions(session, subject)
    done["contacts anonymised"] = _bulk(
        session,
        update(M.Contact)
        .where(
            M.Contact.id.in_(ids),
            (M.Contact.name != ERASED_NAME)
            | M.Contact.email.is_not(None)
            | M.Contact.phone.is_not(None),
        )
        .values(name=ERASED_NAME, email=None, phone=None),
    )
    return StoreReport("crm", done)


def _redact_mentions(session: Session, subject: Subject) -> int:
    """Other conversations and tickets that quote the email or phone number (someone
    typing it on another device, or about them) keep their lines, minus those values.
    Names are not redacted there: a first name is too common to find safely."""
    needles = sorted(subject.emails | subject.phones)
    redacted = 0
    if not needles:
        return 0
    for model, attributes in (
        (models.InteractionMessage, ("text",)),
        (models.Ticket, ("subject", "description")),
    ):
        for attribute in attributes:
            column_ = getattr(model, attribute)
            matches = or_(*(func.lower(column_).contains(n.lower()) for n in needles))
            for row in session.execute(select(model).where(matches)).scalars():
                setattr(row, attribute, _redact(getattr(row, attribute) or "", needles))
                redacted += 1
    return redacted


async def erase_contact(
    factory: sessionmaker,
    contact: int | str,
    actor: str,
    secret: bytes,
    stores: Sequence[ConversationStore] = (),
) -> Receipt:
    """Erase the contact (an id or an email) from the CRM and from ``stores``.

    ``actor`` is "customer" or an operator's name; ``secret`` keys the subject hash
    (``crm_bridge.link_tokens.identity_secret``). Raises ``ContactNotFound``, or
    ``ErasureIncomplete`` when a store fails (then the CRM is untouched).
    """

    def collect() -> Subject:
        with unit_of_work(factory) as session:
            return collect_subject(session, contact)

    subject = await asyncio.to_thread(collect)
    reports: list[StoreReport] = []
    for store in stores:
        try:
            reports.append(await store.erase(subject))
        except RapportError as error:
            raise ErasureIncomplete(f"{store.name}: {error}", reports) from error
    hashed = subject_hash(secret, subject.hash_input)

    def finish() -> Receipt:
        with unit_of_work(factory) as session:
            # Collected again inside this unit of work: a link made meanwhile is included.
            fresh = collect_subject(session, subject.contact_id)
            crm = erase_crm(session, fresh)
            everything = (*reports, crm)
            record = models.Erasure(
                subject_hash=hashed,
                actor=actor[:100],
                erased_at=models.utcnow(),
                receipt={report.store: report.as_json() for report in everything},
            )
            session.add(record)
            session.flush()
            return Receipt(record.id, hashed, record.actor, record.erased_at, everything)

    receipt = await asyncio.to_thread(finish)
    logger.info("Erasure #%s done by %s", receipt.erasure_id, receipt.actor)
    return receipt
