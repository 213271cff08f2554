"""Contact details through phonenumbers and email-validator."""

from __future__ import annotations

import pytest

from crm_bridge.errors import InvalidInput
from crm_bridge.validation import normalise_email, normalise_phone


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("06 12345678", "NL", "+31612345678"),
        ("07700 900123", "GB", "+447700900123"),
        ("0044 7700 900123", "GB", "+447700900123"),
        ("+1 (415) 555-2671", "NL", "+14155552671"),
        ("030 1234567", "DE", "+49301234567"),
    ],
)
def test_phone_numbers_become_e164_in_the_shops_region(raw: str, region: str, e164: str) -> None:
    assert normalise_phone(raw, region) == e164


def test_the_region_comes_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEFAULT_PHONE_REGION", "nl")
    assert normalise_phone("06 12345678") == "+31612345678"


@pytest.mark.parametrize("raw", ["12ab", "123", "+44 12", "", "call me maybe"])
def test_impossible_phone_numbers_are_refused(raw: str) -> None:
    with pytest.raises(InvalidInput) as error:
        normalise_phone(raw, "GB")
    assert error.value.field == "phone"


@pytest.mark.parametrize(
    ("raw", "clean"),
    [(" Alice@Example.COM ", "alice@example.com"), ("zoë@exämple.de", "zoë@exämple.de")],
)
def test_emails_are_normalised(raw: str, clean: str) -> None:
    assert normalise_email(raw) == clean


@pytest.mark.parametrize(
    "raw", ["alice@example", "alice example.com", "bob@", "@example.com", "a@b@c.com", "x" * 250]
)
def test_malformed_emails_are_refused(raw: str) -> None:
    with pytest.raises(InvalidInput) as error:
        normalise_email(raw)
    assert error.value.field == "email"
