"""Signed random tokens for links that act once: a random part and a truncated
HMAC-SHA256 tag of it, both URL-safe base64 without padding (44 characters of
``[A-Za-z0-9_-]``, which fits Telegram's 64-character ``/start`` payload).

A forged token fails its tag before any database lookup; the database keeps only the
SHA-256 of the random part, so a copy of the CRM holds no usable link. Each use (deep
links, export links) signs with its own domain, so a token of one never works as the
other. The single-use bookkeeping stays with each use: it owns its table.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from crm_bridge import models
from crm_bridge.errors import ContactNotFound, InvalidInput, SettingsError

RANDOM_BYTES = 16  # 128 bits of randomness: 22 characters
TAG_BYTES = 16  # truncated HMAC-SHA256: 22 characters
PART_CHARS = 22
TOKEN_CHARS = 2 * PART_CHARS
MIN_SECRET_CHARS = 32
NOT_VALID = "This link is not valid."
_TOKEN = re.compile(rf"[A-Za-z0-9_-]{{{TOKEN_CHARS}}}")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def looks_like_token(text: str) -> bool:
    """Has ``text`` the shape of a signed token (not: is it valid)? Lets a channel tell a
    token from other deep-link payloads, such as a campaign's name."""
    return bool(_TOKEN.fullmatch(text or ""))


class TokenSigner:
    """Makes tokens and checks their signature for one use (``domain``)."""

    def __init__(self, secret: bytes, domain: bytes) -> None:
        if len(secret) < MIN_SECRET_CHARS:
            raise SettingsError(f"A token secret must be at least {MIN_SECRET_CHARS} bytes")
        self._secret = secret
        self._domain = domain

    def _tag(self, random_part: str) -> str:
        message = self._domain + random_part.encode("ascii")
        return _b64(hmac.new(self._secret, message, hashlib.sha256).digest()[:TAG_BYTES])

    @staticmethod
    def _hash(random_part: str) -> str:
        return hashlib.sha256(random_part.encode("ascii")).hexdigest()

    def new(self) -> tuple[str, str]:
        """A fresh ``(token, hash to store)``."""
        random_part = _b64(secrets.token_bytes(RANDOM_BYTES))
        return random_part + self._tag(random_part), self._hash(random_part)

    def stored_hash(self, token: str) -> str:
        """The hash stored for ``token`` if it is one of ours; ``InvalidInput`` otherwise."""
        candidate = (token or "").strip()
        if not _TOKEN.fullmatch(candidate):
            raise InvalidInput("token", NOT_VALID)
        random_part, tag = candidate[:PART_CHARS], candidate[PART_CHARS:]
        if not hmac.compare_digest(tag, self._tag(random_part)):
            raise InvalidInput("token", NOT_VALID)
        return self._hash(random_part)


def claim(
    session: Session, model: Any, token_hash: str, now: datetime, **values: Any
) -> tuple[Any, bool]:
    """Mark the token's row (of ``model``: a table with token_hash, expires_at and used_at)
    used now, only if it is unused and unexpired; the row, and whether this call claimed
    it. The UPDATE comes first and decides: under concurrency exactly one transaction
    sees the row unused (the others wait for its lock, then match nothing)."""
    claimed = session.execute(
        update(model)
        .where(model.token_hash == token_hash, model.used_at.is_(None), model.expires_at > now)
        .values(used_at=now, **values)
        .execution_options(synchronize_session=False)
    ).rowcount
    row = session.execute(select(model).where(model.token_hash == token_hash)).scalar_one_or_none()
    if row is None:
        raise InvalidInput("token", NOT_VALID)
    return row, claimed == 1


def add_row(
    session: Session, model: Any, contact_id: int, token_hash: str, now: datetime, ttl: timedelta
) -> None:
    """Store a new token's row for an existing contact (``ContactNotFound`` otherwise)."""
    if session.get(models.Contact, contact_id) is None:
        raise ContactNotFound(f"No contact {contact_id}.")
    session.add(
        model(contact_id=contact_id, token_hash=token_hash, created_at=now, expires_at=now + ttl)
    )
