"""The shop's business rules, in the domain layer, so every caller gets them: the
assistant's actions, agent tools, and the gateway itself (which refuses what breaks them).

Wording for customers is the callers' business; a rule only says whether and why.
"""

from __future__ import annotations

import enum
from datetime import date, datetime, timedelta, timezone

RETURN_WINDOW_DAYS = 30


class ReturnBlock(str, enum.Enum):
    """Why an order cannot be returned."""

    NOT_DELIVERED = "not_delivered"
    PAST_WINDOW = "past_window"


def today() -> date:
    """The date the rules go by (UTC, as the CRM stores its times)."""
    return datetime.now(timezone.utc).date()


def return_block(status: str, delivered_at: datetime | None, on: date) -> ReturnBlock | None:
    """Why an order in ``status``, delivered at ``delivered_at``, cannot be returned on
    the day ``on``; None when it can (within ``RETURN_WINDOW_DAYS`` of delivery)."""
    if status != "delivered" or delivered_at is None:
        return ReturnBlock.NOT_DELIVERED
    if delivered_at.date() < on - timedelta(days=RETURN_WINDOW_DAYS):
        return ReturnBlock.PAST_WINDOW
    return None
