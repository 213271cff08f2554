"""Rapport's one error family.

Every error the project raises on purpose is a :class:`RapportError`, in one of four
kinds: :class:`NotFound`, :class:`Conflict`, :class:`InvalidInput`, :class:`Unavailable`.
Each kind maps to one HTTP status (:func:`http_status`, here) and one customer
wording (``actions.handoff.tell_crm_failure``); the specific errors below only add a name. The
text of these errors never carries backend details or secrets. It lives here, in the
base layer, so that every package (which may all import ``crm_bridge``) shares it.
"""

from __future__ import annotations


class RapportError(Exception):
    """Root of every error Rapport raises on purpose."""


class NotFound(RapportError):
    """What was asked for does not exist (or is not the caller's to see)."""


class Conflict(RapportError):
    """The thing exists but is not in a state that allows this (someone was first...)."""


class Unavailable(RapportError):
    """A system we depend on could not be reached or failed; nothing was applied."""


class InvalidInput(RapportError):
    """A value failed validation (an email, a phone number, an empty field...).

    ``field`` names the offending field so that a form can ask for it again.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class SettingsError(RapportError, ValueError):
    """A setting has a value that cannot work; the message names the variable."""


class ContactNotFound(NotFound):
    """No contact matches the identity or id that was asked for."""


class OrderNotFound(NotFound):
    """No order with that number is visible to the caller.

    Raised both when the order does not exist and when it belongs to another contact,
    so that callers cannot tell the two apart (no order enumeration).
    """


class HandoffNotFound(NotFound):
    """No handoff (or interaction to take over) with that id."""


class HandoffConflict(Conflict):
    """The handoff is not in a state that allows this (already claimed, not yours, closed)."""


class ReturnNotAllowed(Conflict):
    """The order cannot be returned (``block`` says why: a ``crm_bridge.rules.ReturnBlock``)."""

    def __init__(self, order_number: str, block: str) -> None:
        super().__init__(f"Order {order_number} cannot be returned ({block}).")
        self.order_number = order_number
        self.block = block


class CrmUnavailable(Unavailable):
    """The CRM backend could not be reached or failed; the operation was not applied."""


class MessageNotTaken(Unavailable):
    """A customer's message could not be handled (the conversation could not be locked,
    read or saved); nothing of it was recorded, so the customer should send it again."""

    customer_text = "Sorry, I couldn't take that message just now. Please send it again."


# Each kind, as the HTTP status that answers it (anything else of ours: 500). Every HTTP
# surface (the channels' refusals, the agent API, the workbench) answers through this.
HTTP_STATUSES: tuple[tuple[type[RapportError], int], ...] = (
    (InvalidInput, 400),
    (NotFound, 404),
    (Conflict, 409),
    (Unavailable, 503),
)


def http_status(error: RapportError) -> int:
    """The HTTP status that answers ``error``."""
    return next((status for kind, status in HTTP_STATUSES if isinstance(error, kind)), 500)
