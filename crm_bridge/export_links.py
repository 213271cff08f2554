"""Single-use, expiring download links for a customer's data export.

A customer who proved who they are asks "what do you know about me?" in a chat; the
answer carries a link (``<web chat>/export/<token>``) that downloads their export once,
within ``DEFAULT_TTL``. Tokens are signed and stored as ``crm_bridge.signed_tokens``
describes, in their own domain. The export itself is built when the link is opened, so
nothing personal waits in this table.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.orm import sessionmaker

from crm_bridge import models
from crm_bridge.db import unit_of_work
from crm_bridge.errors import Conflict, InvalidInput
from crm_bridge.models import utcnow
from crm_bridge.signed_tokens import TokenSigner, add_row, claim

# Another domain than the deep links': an export token never works as a login link.
_DOMAIN = b"rapport-export-token:"
DEFAULT_TTL = timedelta(minutes=30)
MAX_TTL = timedelta(hours=24)


class LinkGone(Conflict):
    """The token was real but is used or expired (HTTP 410)."""


class ExportLinks:
    """Issues, redeems and revokes export tokens; one short transaction per call."""

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
        """A new token for the contact's export, valid once within ``ttl``."""
        if not timedelta(0) < ttl <= MAX_TTL:
            raise InvalidInput("ttl", "An export link lasts more than no time and at most a day.")
        token, token_hash = self._signer.new()
        now = self._now()
        with unit_of_work(self._factory) as session:
            add_row(session, models.ExportToken, contact_id, token_hash, now, ttl)
        return token

    def redeem(self, token: str) -> int:
        """Use the token: the contact id whose export it opens. ``InvalidInput`` for a
        token that is not ours (HTTP 404), ``LinkGone`` once used or expired (410)."""
        token_hash = self._signer.stored_hash(token)
        now = self._now()
        with unit_of_work(self._factory) as session:
            row, claimed = claim(session, models.ExportToken, token_hash, now)
            if not claimed:
                raise LinkGone("This link was already used or has expired.")
            contact_id: int = row.contact_id
        return contact_id

    def revoke(self, contact_id: int) -> int:
        """Forget every export link of the contact (before an erasure); how many."""
        with unit_of_work(self._factory) as session:
            result = session.execute(
                delete(models.ExportToken)
                .where(models.ExportToken.contact_id == contact_id)
                .execution_options(synchronize_session=False)
            )
            return int(result.rowcount or 0)
