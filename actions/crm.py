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
    """Forget the gateway and its companions, so the next call reads the environment
    again (tests, reloads)."""
    from actions.handoff import get_agent_console, get_business_hours

    get_gateway.cache_clear()
    get_handoff_desk.cache_clear()
    get_agent_console.cache_clear()
    get_business_hours.cache_clear()


def tell_crm_failure(dispatcher: Any, error: CrmError, tracker: Any = None) -> None:
    """Answer a failed CRM call in the customer's terms (never the backend's text).

    With the conversation's ``tracker``, an unavailable system also hands the
    conversation to a person when the handoff desk can still record it.
    """
    logger.warning("CRM call failed: %s", type(error).__name__)
    if isinstance(error, CrmUnavailable) and tracker is not None:
        from actions.handoff import start_handoff
        from crm_bridge.handoff import HandoffReason

        try:
            start_handoff(
                dispatcher, tracker, HandoffReason.ACTION_FAILED,
                intro="Sorry, I can't reach our customer records right now. ",
            )  # fmt: skip
            return
        except CrmError:
            pass  # the desk is down too: say so and offer a person later
    if isinstance(error, CrmUnavailable):
        dispatcher.utter_message(response="utter_crm_unavailable")
    else:
        dispatcher.utter_message(
            text="Sorry, something went wrong on our side. Please try again, or ask for a person."
        )
