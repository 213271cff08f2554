"""Single-use, expiring deep-link tokens that prove which CRM contact a channel identity is.

A support agent (or the shop) issues a token for a contact from the CRM and sends it as
a link (``https://t.me/<bot>?start=<token>`` or ``<web chat>?link=<token>``); whoever
opens it in a channel is linked to that contact, once. A token is a random part and a
truncated HMAC-SHA256 tag of it, both URL-safe base64 without padding: 44 characters of
``[A-Za-z0-9_-]``, which fits Telegram's 64-character ``/start`` payload. Forged tokens
fail the tag before any database lookup; the database keeps only the SHA-256 of the
random part, so a copy of the CRM does not hold usable links.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Callable
from contextlib import suppress
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from crm_bridge import models
from crm_bridge.db import unit_of_work
from crm_bridge.errors import ContactNotFound, InvalidInput
from crm_bridge.models import utcnow
from crm_bridge.settings import CrmSettings, SettingsError
from crm_bridge.sql_gateway import find_identity

RANDOM_BYTES = 16  # 128 bits of randomness: 22 characters
TAG_BYTES = 16  # truncated HMAC-SHA256: 22 characters
PART_CHARS = 22
TOKEN_CHARS = 2 * PART_CHARS
_TOKEN = re.compile(rf"[A-Za-z0-9_-]{{{TOKEN_CHARS}}}")
_DOMAIN = b"rapport-link-token:"  # keeps these tags apart from other uses of the secret
DEFAULT_TTL = timedelta(hours=24)
MAX_TTL = timedelta(days=30)
MIN_SECRET_CHARS = 32

NOT_VALID = "This link is not valid."
EXPIRED = "This link has expired; ask for a new one."
ALREADY_USED = "This link was already used."


def identity_secret(settings: CrmSettings) -> bytes:
    """The key that signs link tokens: IDENTITY_SECRET, else a random key created once
    (mode 0600) at ``var/identity.secret`` and reused by every process."""
    if settings.identity_secret:
        if len(settings.identity_secret) < MIN_SECRET_CHARS:
            raise SettingsError(f"IDENTITY_SECRET must be at least {MIN_SECRET_CHARS} characters")
        return settings.identity_secret.encode()
    return _stored_secret(settings.var_dir / "identity.secret")


def _stored_secret(path: Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole to a private temporary file, then linked into place: another
        # process never reads a half-written key, and the first one to link wins.
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
            with suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
    return path.read_text().strip().encode()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _token_hash(random_part: str) -> str:
    return hashlib.sha256(random_part.encode("ascii")).hexdigest()


class LinkTokens:
    """Issues and redeems link tokens; one short transaction per call."""

    def __init__(
        self,
        session_factory: sessionmaker,
        secret: bytes,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        if len(secret) < MIN_SECRET_CHARS:
            raise SettingsError(f"The link token secret must be at least {MIN_SECRET_CHARS} bytes")
        self._factory = session_factory
        self._secret = secret
        self._now = now

    def _tag(self, random_part: str) -> str:
        digest = hmac.new(self._secret, _DOMAIN + random_part.encode("ascii"), hashlib.sha256)
        return _b64(digest.digest()[:TAG_BYTES])

    def issue(self, contact_id: int, ttl: timedelta = DEFAULT_TTL) -> str:
        """A new token for the contact, valid for ``ttl`` (at most 30 days)."""
        if not timedelta(0) < ttl <= MAX_TTL:
            raise InvalidInput("ttl", "A link lasts more than no time and at most 30 days.")
        random_part = _b64(secrets.token_bytes(RANDOM_BYTES))
        now = self._now()
        with unit_of_work(self._factory) as session:
            if session.get(models.Contact, contact_id) is None:
                raise ContactNotFound(f"No contact {contact_id}.")
            session.add(
                models.LinkToken(
                    contact_id=contact_id,
                    token_hash=_token_hash(random_part),
                    created_at=now,
                    expires_at=now + ttl,
                )
            )
        return random_part + self._tag(random_part)

    def _random_part(self, token: str) -> str:
        """The token's random part if its tag is ours; ``InvalidInput`` otherwise."""
        candidate = (token or "").strip()
        if not _TOKEN.fullmatch(candidate):
            raise InvalidInput("token", NOT_VALID)
        random_part, tag = candidate[:PART_CHARS], candidate[PART_CHARS:]
        if not hmac.compare_digest(tag, self._tag(random_part)):
            raise InvalidInput("token", NOT_VALID)
        return random_part

    def redeem(self, token: str, channel: str, external_id: str) -> int:
        """Use the token: link ``channel:external_id`` to its contact (verified now) and
        return the contact id. A token works once, before it expires."""
        if not channel or len(channel) > 50 or ":" in channel:
            raise InvalidInput("channel", "Name the channel (at most 50 characters).")
        if not external_id or len(external_id) > 200:
            raise InvalidInput("external_id", "Name the channel's user (at most 200 characters).")
        token_hash = _token_hash(self._random_part(token))
        now = self._now()
        with unit_of_work(self._factory) as session:
            # The UPDATE comes first and decides: under concurrency exactly one
            # transaction sees the row unused (the others wait for its lock, then match 0).
            claimed = session.execute(
                update(models.LinkToken)
                .where(
                    models.LinkToken.token_hash == token_hash,
                    models.LinkToken.used_at.is_(None),
                    models.LinkToken.expires_at > now,
                )
                .values(used_at=now, used_by=f"{channel}:{external_id}")
                .execution_options(synchronize_session=False)
            ).rowcount
            row = session.execute(
                select(models.LinkToken).where(models.LinkToken.token_hash == token_hash)
            ).scalar_one_or_none()
            if row is None:
                raise InvalidInput("token", NOT_VALID)
            if claimed != 1:
                raise InvalidInput("token", ALREADY_USED if row.used_at else EXPIRED)
            contact_id: int = row.contact_id
            _link(session, channel, external_id, contact_id, now)
        return contact_id


def _link(session: Session, channel: str, external_id: str, contact_id: int, now: datetime) -> None:
    """Point the channel identity at the contact, verified ``now`` (created if new)."""
    identity = find_identity(session, channel, external_id)
    if identity is None:
        try:
            with session.begin_nested():
                session.add(
                    models.ChannelIdentity(
                        channel=channel,
                        external_id=external_id,
                        contact_id=contact_id,
                        verified_at=now,
                    )
                )
            return
        except IntegrityError:  # created meanwhile by another transaction
            identity = find_identity(session, channel, external_id)
            if identity is None:
                raise
    identity.contact_id = contact_id
    identity.verified_at = now
