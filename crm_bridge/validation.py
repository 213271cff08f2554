"""Validation and normalisation of contact details (emails, phone numbers, order numbers)."""

from __future__ import annotations

import re

from crm_bridge.errors import InvalidInput

# Deliberately simple: one @, a dotted domain, no spaces. Deliverability is the mail
# server's business; this catches typos such as "alice@example" or "alice example.com".
_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$"
)
_PHONE_SEPARATORS = re.compile(r"[\s\-().]")
_ORDER_NUMBER = re.compile(r"^\d{5}$")


def normalise_email(raw: str) -> str:
    """The email lower-cased and stripped; ``InvalidInput('email', ...)`` if it is not one."""
    email = (raw or "").strip().lower()
    if len(email) > 254 or not _EMAIL.match(email):
        raise InvalidInput(
            "email", "That doesn't look like an email address (like name@example.com)."
        )
    return email


def normalise_phone(raw: str) -> str:
    """The phone as ``+`` and digits (E.164-like); ``InvalidInput('phone', ...)`` otherwise."""
    compact = _PHONE_SEPARATORS.sub("", (raw or "").strip())
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    digits = compact[1:] if compact.startswith("+") else compact
    if not digits.isdigit() or not 7 <= len(digits) <= 15:
        raise InvalidInput(
            "phone", "That doesn't look like a phone number (7 to 15 digits, e.g. +44 7700 900123)."
        )
    return compact


def normalise_order_number(raw: str) -> str:
    """The order number without ``#`` or spaces; ``InvalidInput('order_number', ...)`` otherwise."""
    number = (raw or "").strip().lstrip("#").strip()
    if not _ORDER_NUMBER.match(number):
        raise InvalidInput("order_number", "Order numbers have 5 digits, like 10001.")
    return number
