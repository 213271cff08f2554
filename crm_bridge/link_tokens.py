"""Single-use, expiring deep-link tokens that prove which CRM contact a channel identity is.

A support agent (or the shop) issues a token for a contact from the CRM and sends it as
a link (``https://t.me/<bot>?start=<token>`` or ``<web chat>?link=<token>``); whoever
opens it in a channel is linked to that contact, once. Tokens are signed and stored as
``crm_bridge.signed_tokens`` describes (only a hash is kept; forgeries fail before any
lookup).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from contextlib import suppress
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.orm import sessionmaker

from crm_bridge import models
from crm_bridge.db import unit_of_work
from crm_bridge.errors import InvalidInput
from crm_bridge.identity_links import LINK_TOKEN, link
from crm_bridge.models import utcnow
from crm_bridge.settings import CrmSettings, SettingsError
from crm_bridge.signed_tokens import (
    MIN_SECRET_CHARS,
    NOT_VALID,
    TokenSigner,
    add_row,
    claim,
    looks_like_token,
)

__all__ = [
    "ALREADY_USED",
    "EXPIRED",
    "NOT_VALID",
    "LinkTokens",
    "identity_secret",
    "looks_like_token",
]

_DOMAIN = b"rapport-link-token:"  # keeps these tags apart from other uses of the secret
DEFAULT_TTL = timedelta(hours=24)
MAX_TTL = timedelta(days=30)

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


class LinkTokens:
    """Issues and redeems link tokens; one short transaction per call."""

    def __init__(
        self,
        session_factory: sessionmaker,
        secret: bytes,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self._signer = TokenSigner(secret, _DOMAIN)
        self._factory = session_factory
        self._now = now

    def issue(self, contact_id: int, ttl: timedelta = DEFAULT_TTL) -> str:
        """A new token for the contact, valid for ``ttl`` (at most 30 days)."""
        if not timedelta(0) < ttl <= MAX_TTL:
            raise InvalidInput("ttl", "A link lasts more than no time and at most 30 days.")
        token, token_hash = self._signer.new()
        now = self._now()
        with unit_of_work(self._factory) as session:
            add_row(session, models.LinkToken, contact_id, token_hash, now, ttl)
        return token

    def redeem(self, token: str, channel: str, external_id: str) -> int:
        """Use the token: link ``channel:external_id`` to its contact (verified now) and
        return the contact id. A token works once, before it expires."""
        if not channel or len(channel) > 50 or ":" in channel:
            raise InvalidInput("channel", "Name the channel (at most 50 characters).")
        if not external_id or len(external_id) > 200:
            raise InvalidInput("external_id", "Name the channel's user (at most 200 characters).")
        token_hash = self._signer.stored_hash(token)
        now = self._now()
        with unit_of_work(self._factory) as session:
            row, claimed = claim(
                session, models.LinkToken, token_hash, now, used_by=f"{channel}:{external_id}"
            )
            if not claimed:
                raise InvalidInput("token", ALREADY_USED if row.used_at else EXPIRED)
            contact_id: int = row.contact_id
            link(session, channel, external_id, contact_id, LINK_TOKEN, now)
        return contact_id
