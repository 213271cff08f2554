"""Validation and normalisation of contact details (emails, phone numbers, order numbers).

Emails are checked by ``email-validator`` (syntax only: deliverability is the mail
server's business) and phone numbers by ``phonenumbers`` (Google's libphonenumber), so a
national number becomes E.164 in the shop's region (``DEFAULT_PHONE_REGION``): with
``NL``, "06 12345678" is stored as "+31612345678".
"""

from __future__ import annotations

import re

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from crm_bridge import settings
from crm_bridge.errors import InvalidInput

MAX_EMAIL_CHARS = 254
_ORDER_NUMBER = re.compile(r"^\d{5}$")


def normalise_email(raw: str) -> str:
    """The email, lower-cased; ``InvalidInput('email', ...)`` if it is not one."""
    candidate = (raw or "").strip()
    try:
        if len(candidate) > MAX_EMAIL_CHARS:
            raise EmailNotValidError("too long")
        checked = validate_email(candidate, check_deliverability=False)
    except EmailNotValidError as error:
        raise InvalidInput(
            "email", "That doesn't look like an email address (like name@example.com)."
        ) from error
    # Lower-cased whole: the CRM finds a customer by email whatever case they type.
    return str(checked.normalized).lower()


def normalise_phone(raw: str, region: str | None = None) -> str:
    """The phone number in E.164 (``+`` and digits), national numbers read in ``region``
    (default: ``DEFAULT_PHONE_REGION``); ``InvalidInput('phone', ...)`` otherwise."""
    try:
        number = phonenumbers.parse((raw or "").strip(), region or settings.load().phone_region)
    except phonenumbers.NumberParseException as error:
        raise _bad_phone() from error
    # "Possible" (a plausible length for the country), not "valid": numbers from ranges
    # kept for drama and tests, such as +44 7700 900xxx, are still someone's input.
    if not phonenumbers.is_possible_number(number):
        raise _bad_phone()
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def _bad_phone() -> InvalidInput:
    return InvalidInput(
        "phone", "That doesn't look like a phone number (7 to 15 digits, e.g. +44 7700 900123)."
    )


def normalise_order_number(raw: str) -> str:
    """The order number without ``#`` or spaces; ``InvalidInput('order_number', ...)`` otherwise."""
    number = (raw or "").strip().lstrip("#").strip()
    if not _ORDER_NUMBER.match(number):
        raise InvalidInput("order_number", "Order numbers have 5 digits, like 10001.")
    return number
