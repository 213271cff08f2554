"""The CRM gateway the actions use, built on first use (never at import time)."""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any

from crm_bridge import settings as crm_settings
from crm_bridge.errors import CrmError, CrmUnavailable
from crm_bridge.gateway import CrmGateway

if TYPE_CHECKING:
    from crm_bridge.handoff import HandoffDesk

logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def get_gateway() -> CrmGateway:
    """The gateway for CRM_DATABASE_URL (SQLite under var/ by default), built once."""
    from crm_bridge.sql_gateway import SqlCrmGateway

    return SqlCrmGateway.from_url(crm_settings.database_url())


@functools.lru_cache(maxsize=1)
def get_handoff_desk() -> HandoffDesk:
    """Conversation ownership (bot / queued / agent) in the same CRM, built once."""
    from crm_bridge.handoff import HandoffDesk

    return HandoffDesk(crm_settings.database_url())


def reset_gateway() -> None:
    """Forget the gateway, so the next call reads CRM_DATABASE_URL again (tests, reloads)."""
    get_gateway.cache_clear()
    get_handoff_desk.cache_clear()


def tell_crm_failure(dispatcher: Any, error: CrmError) -> None:
    """Answer a failed CRM call in the customer's terms (never the backend's text)."""
    logger.warning("CRM call failed: %s", type(error).__name__)
    if isinstance(error, CrmUnavailable):
        dispatcher.utter_message(response="utter_crm_unavailable")
    else:
        dispatcher.utter_message(
            text="Sorry, something went wrong on our side. Please try again, or ask for a person."
        )
