"""What a remote CRM adapter is given and what it may answer.

The SQL CRM stays the bot's own store (identities, orders, proofs); when ``CRM_BACKEND``
names a remote CRM, every write the business's people should see there (a contact, a
conversation with its transcript, a ticket, a contact's new details) is recorded as an
:class:`OutboxEvent` in the same transaction as the local write, and the outbox worker
hands it to the adapter. An adapter delivers one event idempotently: it looks up and
stores the remote ids it creates through :class:`RemoteRefs`, so a retry after a crash
between the remote write and our acknowledgement finds the record instead of creating a
second one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Protocol

from crm_bridge.errors import RapportError, Unavailable


class EventKind(str, enum.Enum):
    """What happened locally that the remote CRM must show."""

    CONTACT_UPSERT = "contact_upsert"  # a contact was linked or created: make sure it exists
    CONTACT_UPDATED = "contact_updated"  # new email and/or phone
    CONVERSATION_LOGGED = "conversation_logged"  # an Interaction closed: its transcript
    TICKET_OPENED = "ticket_opened"  # a complaint, return, cancellation, handoff...


@dataclass(frozen=True)
class OutboxEvent:
    """One event as the adapter sees it. ``key`` identifies the local record it is about
    (e.g. ``interaction:42``, ``ticket:7``): the idempotency key of the remote write."""

    id: int
    kind: EventKind
    contact_id: int
    key: str
    payload: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0


class RemoteRefs(Protocol):
    """Remote ids we stored for local records (table ``remote_refs``), per backend."""

    def get(self, key: str) -> str | None:
        """The remote id stored for a local key (``contact:3``, ``interaction:42``), or None."""

    def put(self, key: str, remote_id: str) -> None:
        """Remember the remote id of a local key (idempotent)."""


class RemoteCrm(Protocol):
    """A remote CRM adapter. ``name`` is the ``CRM_BACKEND`` value (hubspot, salesforce)."""

    name: str

    def deliver(self, event: OutboxEvent, refs: RemoteRefs) -> None:
        """Write the event remotely, idempotently. Raises :class:`RemoteRetryable` for a
        429, a 5xx, a timeout or a connection failure, :class:`RemotePermanent` for what a
        retry cannot fix (a 400 validation error, a deleted record)."""


class RemoteRetryable(Unavailable):
    """The remote CRM could not take the write now; try again (after ``retry_after``
    seconds when the CRM said so, e.g. a 429's Retry-After)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RemotePermanent(RapportError):
    """The remote CRM refused the write for a reason a retry cannot fix; the event is
    parked with this message (which names no personal data)."""
