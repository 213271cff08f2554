"""The CRM's error hierarchy.

Callers (Rasa actions, the consumer, the CLI) catch :class:`CrmError` and answer with a
domain message; the text of these errors never carries backend details or secrets.
"""

from __future__ import annotations


class CrmError(Exception):
    """Base class for every error the CRM bridge raises on purpose."""


class ContactNotFound(CrmError):
    """No contact matches the identity or id that was asked for."""


class OrderNotFound(CrmError):
    """No order with that number is visible to the caller.

    Raised both when the order does not exist and when it belongs to another contact,
    so that callers cannot tell the two apart (no order enumeration).
    """


class InvalidInput(CrmError):
    """A value failed validation (an email, a phone number, an empty field...).

    ``field`` names the offending field so that a form can ask for it again.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class CrmUnavailable(CrmError):
    """The CRM backend could not be reached or failed; the operation was not applied."""


class HandoffConflict(CrmError):
    """The handoff is not in a state that allows this (already claimed, not yours, closed)."""
