"""Signed tokens from the shop's site naming a logged-in customer to the web chat.

The shop signs a short-lived HS256 JWT with SHOP_TOKEN_SECRET; its ``sub`` is the
customer's email or CRM contact id. The algorithm is pinned (``none`` and every other
algorithm are refused), ``exp`` and ``sub`` are required, a token may live at most an
hour, and clocks may differ by 30 seconds. The shop's side, in Python::

    import time, jwt
    now = int(time.time())
    token = jwt.encode(
        {"sub": "alice@example.com", "iat": now, "exp": now + 600}, SECRET, algorithm="HS256"
    )

Errors never repeat the token.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import jwt

from crm_bridge.errors import InvalidInput
from crm_bridge.settings import SettingsError
from crm_bridge.validation import normalise_email

ALGORITHM = "HS256"
MAX_LIFETIME_SECONDS = 3600
LEEWAY_SECONDS = 30
MIN_SECRET_CHARS = 32
MAX_TOKEN_CHARS = 4096
MAX_SUB_CHARS = 254


@dataclass(frozen=True)
class ShopCustomer:
    """Who the shop says is chatting: an email or a CRM contact reference, and until when."""

    email: str | None
    contact_ref: str | None
    expires_at: datetime


def _checked_secret(secret: str) -> str:
    if not secret:
        raise SettingsError("SHOP_TOKEN_SECRET is not set")
    if len(secret) < MIN_SECRET_CHARS:
        raise SettingsError(f"SHOP_TOKEN_SECRET must be at least {MIN_SECRET_CHARS} characters")
    return secret


def make_shop_token(
    sub: str, secret: str, ttl: timedelta = timedelta(minutes=10), now: float | None = None
) -> str:
    """A token as the shop makes it (for tests and as the reference for the shop's side)."""
    issued = int(time.time() if now is None else now)
    claims = {"sub": sub, "iat": issued, "exp": issued + int(ttl.total_seconds())}
    return jwt.encode(claims, _checked_secret(secret), algorithm=ALGORITHM)


def _refused(reason: str) -> InvalidInput:
    return InvalidInput("token", f"The shop's sign-in token was refused: {reason}.")


def _timestamp(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _refused(f"its {name} is not a timestamp")
    return float(value)


def verify_shop_token(token: str, secret: str, now: float | None = None) -> ShopCustomer:
    """The customer the token names; ``InvalidInput('token', ...)`` if it is forged,
    expired, malformed or lives too long. ``now`` is a Unix time (default: the clock)."""
    key = _checked_secret(secret)
    if not token or len(token) > MAX_TOKEN_CHARS:
        raise _refused("it is empty or too long")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            options={
                "require": ["exp", "sub"],
                # Times are checked below, against an injectable clock.
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.MissingRequiredClaimError as error:
        raise _refused(f"it has no {error.claim}") from None
    except jwt.InvalidAlgorithmError:
        raise _refused("it is not signed with HS256") from None
    except jwt.InvalidSignatureError:
        raise _refused("its signature does not match") from None
    except jwt.InvalidTokenError:
        raise _refused("it is not a valid token") from None

    current = time.time() if now is None else now
    expires = _timestamp(claims, "exp")
    issued = _timestamp(claims, "iat")
    not_before = _timestamp(claims, "nbf")
    assert expires is not None  # required above
    if expires <= current - LEEWAY_SECONDS:
        raise _refused("it has expired")
    if not_before is not None and not_before > current + LEEWAY_SECONDS:
        raise _refused("it is not valid yet")
    if issued is not None and issued > current + LEEWAY_SECONDS:
        raise _refused("it was issued in the future")
    # Without iat, the token may not outlive an hour from now either.
    start = issued if issued is not None else current
    if expires - start > MAX_LIFETIME_SECONDS + (0 if issued is not None else LEEWAY_SECONDS):
        raise _refused("it lives longer than an hour")

    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub.strip() or len(sub) > MAX_SUB_CHARS:
        raise _refused("its sub is not an email or a contact id")
    sub = sub.strip()
    expires_at = datetime.fromtimestamp(expires, timezone.utc)
    if "@" in sub:
        try:
            email = normalise_email(sub)
        except InvalidInput:
            raise _refused("its sub is not an email or a contact id") from None
        return ShopCustomer(email=email, contact_ref=None, expires_at=expires_at)
    return ShopCustomer(email=None, contact_ref=sub, expires_at=expires_at)
