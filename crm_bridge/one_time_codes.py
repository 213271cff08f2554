"""Emailed one-time codes: a channel identity proves it owns a contact's email address.

``send`` emails a 6-digit code and keeps only a keyed hash of it (HMAC-SHA256 with the
identity secret: with a million possible codes, an unkeyed hash of any cost could be
reversed from a copied table within the code's ten minutes); ``verify`` answers the
contact id for the right code, once. Guessing is bounded three ways: a code lives 10
minutes, an identity gets 3 codes per 10 minutes, and 5 wrong tries (counted across the
codes that replace each other) lock the identity out for 15 minutes.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from crm_bridge import models
from crm_bridge.db import unit_of_work
from crm_bridge.errors import Conflict, ContactNotFound, InvalidInput, RapportError
from crm_bridge.mailer import Mailer

logger = logging.getLogger(__name__)

CODE_DIGITS = 6
CODE_LIFETIME = timedelta(minutes=10)
MAX_CODES_PER_WINDOW = 3
RATE_WINDOW = timedelta(minutes=10)
MAX_WRONG_TRIES = 5
LOCK_DURATION = timedelta(minutes=15)

# Answers after which only a new code helps (the caller asks for the address again).
NO_CODE = "Ask for a code first."
EXPIRED_CODE = "That code has expired; ask for a new one."

SUBJECT = "Your Rapport code"
BODY = (
    "Your Rapport code is {code}. It expires in 10 minutes. "
    "If you did not ask for it, ignore this email.\n"
)

_Code = models.OneTimeCode


@dataclass(frozen=True)
class _Refusal:
    """An answer decided inside a transaction whose writes must still be committed
    (``unit_of_work`` rolls back when an error leaves it, so it is raised afterwards)."""

    error: RapportError


def _checked_identity(channel: str, external_id: str) -> None:
    if not channel or len(channel) > 50:
        raise InvalidInput("channel", "Name the channel (at most 50 characters).")
    if not external_id or len(external_id) > 200:
        raise InvalidInput("external_id", "Name the channel identity (at most 200 characters).")


def _identity(channel: str, external_id: str) -> tuple:
    return (_Code.channel == channel, _Code.external_id == external_id)


class OneTimeCodes:
    """Sends and checks one-time codes; one short transaction per step."""

    def __init__(
        self,
        session_factory: sessionmaker,
        mailer: Mailer,
        secret: bytes,
        now: Callable[[], datetime] = models.utcnow,
    ) -> None:
        if len(secret) < 32:
            raise ValueError("the identity secret needs at least 32 bytes")
        self._factory = session_factory
        self._mailer = mailer
        self._secret = secret
        self._now = now

    def _hash(self, channel: str, external_id: str, code: str) -> str:
        # Bound to the identity too: a code hash copied to another row matches nothing.
        message = f"{channel}\0{external_id}\0{code}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def send(self, contact_id: int, channel: str, external_id: str) -> None:
        """Email a new code to the contact's address for this channel identity.

        Earlier unused codes of the identity stop working. InvalidInput when the contact
        has no email; Conflict when the identity is locked or asked too often;
        MailUnavailable when the mail could not be sent (the code is then withdrawn).
        """
        _checked_identity(channel, external_id)
        now = self._now()
        code = "".join(secrets.choice("0123456789") for _ in range(CODE_DIGITS))
        code_hash = self._hash(channel, external_id, code)
        with unit_of_work(self._factory) as session:
            contact = session.get(models.Contact, contact_id)
            if contact is None:
                raise ContactNotFound(f"No contact {contact_id}.")
            if not contact.email:
                raise InvalidInput("email", "This contact has no email address to send a code to.")
            address = str(contact.email)
            self._refuse_when_locked(session, channel, external_id, now)
            recent = session.execute(
                select(func.count(_Code.id)).where(
                    *_identity(channel, external_id), _Code.created_at > now - RATE_WINDOW
                )
            ).scalar_one()
            if recent >= MAX_CODES_PER_WINDOW:
                raise Conflict("Please wait before asking for another code.")
            # Wrong tries carry over to the replacing code: asking for a new code must not
            # reset the count (a lock, which ends the codes, is what resets it).
            carried = session.execute(
                select(func.max(_Code.attempts)).where(
                    *_identity(channel, external_id),
                    _Code.used_at.is_(None),
                    _Code.expires_at > now,
                )
            ).scalar_one()
            session.execute(
                update(_Code)
                .where(*_identity(channel, external_id), _Code.used_at.is_(None))
                .values(used_at=now)
            )
            row = _Code(
                contact_id=contact_id,
                channel=channel,
                external_id=external_id,
                code_hash=code_hash,
                created_at=now,
                expires_at=now + CODE_LIFETIME,
                attempts=carried or 0,
            )
            session.add(row)
            session.flush()
            row_id = row.id
        # Mailed after the commit so that no database lock is held while the mail server
        # answers (up to its timeout); a code that could not be sent is withdrawn.
        try:
            self._mailer.send(address, SUBJECT, BODY.format(code=code))
        except Exception:
            # Deleted, not just ended, so that a failed send does not use up the rate limit.
            with unit_of_work(self._factory) as session:
                session.execute(delete(_Code).where(_Code.id == row_id))
            raise
        logger.info("sent a one-time code to contact %s", contact_id)

    def verify(self, channel: str, external_id: str, code: str) -> int:
        """The contact id when ``code`` is the identity's current code (then used up).

        Spaces and other non-digits in ``code`` are ignored. InvalidInput("code", ...)
        for a wrong, expired or missing code; Conflict while the identity is locked.
        """
        _checked_identity(channel, external_id)
        typed = "".join(character for character in code if character in "0123456789")
        if len(typed) != CODE_DIGITS:
            # Not a try: no code looks like this, and a typo should not cost one.
            raise InvalidInput("code", f"A code is {CODE_DIGITS} digits.")
        now = self._now()
        with unit_of_work(self._factory) as session:
            answer = self._verify(session, channel, external_id, typed, now)
        if isinstance(answer, _Refusal):
            raise answer.error
        return answer

    def _verify(
        self, session: Session, channel: str, external_id: str, typed: str, now: datetime
    ) -> int | _Refusal:
        self._refuse_when_locked(session, channel, external_id, now)
        row = (
            session.execute(
                select(_Code)
                .where(*_identity(channel, external_id), _Code.used_at.is_(None))
                .order_by(_Code.created_at.desc(), _Code.id.desc())
                .limit(1)
            )
            .scalars()
            .first()
        )
        if row is None:
            raise InvalidInput("code", NO_CODE)
        if row.expires_at <= now:
            raise InvalidInput("code", EXPIRED_CODE)
        if hmac.compare_digest(row.code_hash, self._hash(channel, external_id, typed)):
            # Conditional: of two concurrent verifies of one code only one updates the row.
            used = session.execute(
                update(_Code)
                .where(_Code.id == row.id, _Code.used_at.is_(None))
                .values(used_at=now)
                .execution_options(synchronize_session=False)
            )
            if used.rowcount != 1:
                raise InvalidInput("code", NO_CODE)
            return int(row.contact_id)
        # Incremented in SQL so that concurrent wrong tries are all counted.
        session.execute(
            update(_Code)
            .where(_Code.id == row.id)
            .values(attempts=_Code.attempts + 1)
            .execution_options(synchronize_session=False)
        )
        attempts = session.execute(select(_Code.attempts).where(_Code.id == row.id)).scalar_one()
        if attempts >= MAX_WRONG_TRIES:
            # The lock also ends the code: after it the customer asks for a new one.
            session.execute(
                update(_Code)
                .where(_Code.id == row.id)
                .values(locked_until=now + LOCK_DURATION, used_at=now)
                .execution_options(synchronize_session=False)
            )
            return _Refusal(Conflict(_locked_text()))
        left = MAX_WRONG_TRIES - attempts
        return _Refusal(
            InvalidInput("code", f"That code is not right; {left} {_tries(left)} left.")
        )

    @staticmethod
    def _refuse_when_locked(
        session: Session, channel: str, external_id: str, now: datetime
    ) -> None:
        locked = session.execute(
            select(_Code.id)
            .where(*_identity(channel, external_id), _Code.locked_until > now)
            .limit(1)
        ).first()
        if locked is not None:
            raise Conflict(_locked_text())


def _locked_text() -> str:
    minutes = int(LOCK_DURATION.total_seconds() // 60)
    return f"Too many wrong codes; try again in {minutes} minutes."


def _tries(left: int) -> str:
    return "try" if left == 1 else "tries"
