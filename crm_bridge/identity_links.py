"""Linking a channel identity to a contact, and how strongly that link is proven.

Two levels: ``order_email`` (someone knew an order's number and the email on it, which a
forwarded confirmation email gives away) is enough to read that order's status; the
others prove the person (a code sent to their email, a link made for them from the CRM,
their shop login, their own Telegram phone contact, or an agent who checked) and are
needed to change data or to see personal data. This module is the one place that
writes ``ChannelIdentity`` rows, so the rule below holds everywhere: a weaker proof
never downgrades a link, nor moves a proven identity to another contact.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from crm_bridge import models
from crm_bridge.errors import InvalidInput

ORDER_EMAIL = "order_email"
EMAIL_CODE = "email_code"
LINK_TOKEN = "link_token"  # noqa: S105 (a proof's name, not a secret)
SHOP_TOKEN = "shop_token"  # noqa: S105
PHONE_CONTACT = "phone_contact"
AGENT = "agent"
PROOFS = (ORDER_EMAIL, EMAIL_CODE, LINK_TOKEN, SHOP_TOKEN, PHONE_CONTACT, AGENT)


def is_proven(proof: str | None) -> bool:
    """Does this proof show the person (not just knowledge of one order)?"""
    return proof in PROOFS and proof != ORDER_EMAIL


def find_identity(
    session: Session, channel: str, external_id: str
) -> models.ChannelIdentity | None:
    """The channel identity (channel + the platform's user or conversation id), if known."""
    return session.execute(
        select(models.ChannelIdentity).where(
            models.ChannelIdentity.channel == channel,
            models.ChannelIdentity.external_id == external_id,
        )
    ).scalar_one_or_none()


def current_owner(session: Session, contact_id: int) -> int:
    """The contact that holds ``contact_id``'s rows now: itself, or the end of its chain
    of merges (a contact merged into one that was merged again later)."""
    seen = {contact_id}
    current = contact_id
    while True:
        merged_into = session.execute(
            select(models.Contact.merged_into_id).where(models.Contact.id == current)
        ).scalar_one_or_none()
        if merged_into is None or merged_into in seen:  # a cycle only from a hand edit
            return current
        seen.add(merged_into)
        current = merged_into


def link(
    session: Session,
    channel: str,
    external_id: str,
    contact_id: int,
    proof: str,
    now: datetime,
) -> models.ChannelIdentity:
    """Point the channel identity at the contact with ``proof`` (created if new).

    The identity goes to the contact that now holds ``contact_id``'s rows (after merges).
    A weak proof leaves a proven identity as it is (same contact or not): knowing an
    order's email must not undo, or take over, what a code or a link proved.
    """
    if proof not in PROOFS:
        raise InvalidInput("proof", f"Unknown proof {proof!r}.")
    # A proof of a merged contact (its old email, say) proves the contact it became.
    contact_id = current_owner(session, contact_id)
    identity = find_identity(session, channel, external_id)
    if identity is None:
        try:
            with session.begin_nested():
                identity = models.ChannelIdentity(
                    channel=channel,
                    external_id=external_id,
                    contact_id=contact_id,
                    verified_at=now,
                    proof=proof,
                )
                session.add(identity)
            return identity
        except IntegrityError:  # created meanwhile by another transaction
            identity = find_identity(session, channel, external_id)
            if identity is None:
                raise
    if is_proven(identity.proof) and not is_proven(proof):
        return identity
    identity.contact_id = contact_id
    identity.verified_at = now
    identity.proof = proof
    return identity
