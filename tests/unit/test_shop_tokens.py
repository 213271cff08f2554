"""Signed tokens from the shop's site naming a logged-in customer to the web chat."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import jwt
import pytest

from crm_bridge.errors import InvalidInput
from crm_bridge.settings import SettingsError
from crm_bridge.shop_tokens import make_shop_token, verify_shop_token

SECRET = "s" * 32
NOW = 1_700_000_000.0


def refused(token: str, secret: str = SECRET, now: float = NOW) -> str:
    with pytest.raises(InvalidInput) as caught:
        verify_shop_token(token, secret, now=now)
    assert caught.value.field == "token"
    assert token not in caught.value.message or not token
    return caught.value.message


def test_valid_token_names_the_customer() -> None:
    token = make_shop_token("Alice@Example.com", SECRET, timedelta(minutes=10), now=NOW)
    customer = verify_shop_token(token, SECRET, now=NOW + 60)
    assert customer.email == "alice@example.com" and customer.contact_ref is None
    assert customer.expires_at == datetime.fromtimestamp(NOW + 600, timezone.utc)

    by_id = verify_shop_token(make_shop_token("17", SECRET, now=NOW), SECRET, now=NOW)
    assert by_id.email is None and by_id.contact_ref == "17"
    # With the real clock too.
    assert verify_shop_token(make_shop_token("17", SECRET), SECRET).contact_ref == "17"


def test_expired_token_is_refused_after_the_leeway() -> None:
    token = make_shop_token("17", SECRET, timedelta(minutes=10), now=NOW)
    assert verify_shop_token(token, SECRET, now=NOW + 600 + 20).contact_ref == "17"
    assert "expired" in refused(token, now=NOW + 600 + 31)
    assert "expired" in refused(
        make_shop_token("17", SECRET, timedelta(minutes=1)), now=time.time() + 3600
    )


def test_wrong_secret_and_tampering_are_refused() -> None:
    token = make_shop_token("17", SECRET, now=NOW)
    assert "signature" in refused(token, secret="t" * 32)
    header, payload, signature = token.split(".")
    other = make_shop_token("18", SECRET, now=NOW).split(".")[1]
    assert "signature" in refused(f"{header}.{other}.{signature}")
    for junk in ("", "not-a-jwt", "a.b.c", "x" * 5000):
        refused(junk)


def test_alg_none_and_other_algorithms_are_refused() -> None:
    claims = {"sub": "17", "iat": int(NOW), "exp": int(NOW) + 600}
    unsigned = jwt.encode(claims, None, algorithm="none")
    assert "HS256" in refused(unsigned)
    assert "HS256" in refused(jwt.encode(claims, SECRET * 2, algorithm="HS512"))


def test_missing_claims_are_refused() -> None:
    no_sub = jwt.encode({"iat": int(NOW), "exp": int(NOW) + 600}, SECRET, algorithm="HS256")
    assert "no sub" in refused(no_sub)
    no_exp = jwt.encode({"sub": "17", "iat": int(NOW)}, SECRET, algorithm="HS256")
    assert "no exp" in refused(no_exp)
    blank = jwt.encode({"sub": " ", "exp": int(NOW) + 60}, SECRET, algorithm="HS256")
    assert "sub" in refused(blank)


def test_lifetime_is_at_most_an_hour() -> None:
    assert verify_shop_token(
        make_shop_token("17", SECRET, timedelta(hours=1), now=NOW), SECRET, now=NOW
    )
    too_long = make_shop_token("17", SECRET, timedelta(hours=1, seconds=1), now=NOW)
    assert "longer than an hour" in refused(too_long)
    # Without iat, the token may not outlive an hour from now.
    no_iat = jwt.encode({"sub": "17", "exp": int(NOW) + 7200}, SECRET, algorithm="HS256")
    assert "longer than an hour" in refused(no_iat)
    future = make_shop_token("17", SECRET, now=NOW + 3600)
    assert "future" in refused(future)


def test_short_or_missing_secret_is_a_clear_error() -> None:
    for secret in ("", "s" * 31):
        with pytest.raises(SettingsError, match="SHOP_TOKEN_SECRET"):
            verify_shop_token("a.b.c", secret)
        with pytest.raises(SettingsError, match="SHOP_TOKEN_SECRET"):
            make_shop_token("17", secret)
