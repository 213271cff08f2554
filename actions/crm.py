"""The CRM gateway the actions use, built on first use (never at import time)."""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any

from crm_bridge import settings as crm_settings
from crm_bridge.errors import Conflict, InvalidInput, NotFound, RapportError, Unavailable
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


# Each kind of crm_bridge.errors in the customer's words (never the backend's text).
# InvalidInput says what is wrong in its own message; Unavailable uses a response.
CUSTOMER_WORDING: tuple[tuple[type[RapportError], str], ...] = (
    (NotFound, "Sorry, I couldn't find that. Could you check it and try again?"),
    (Conflict, "Sorry, that can't be done right now. I can pass you to a person if you like."),
)
SOMETHING_WENT_WRONG = (
    "Sorry, something went wrong on our side. Please try again, or ask for a person."
)


def tell_crm_failure(dispatcher: Any, error: RapportError, tracker: Any = None) -> None:
    """Answer a failed call in the customer's terms, by the error's kind.

    With the conversation's ``tracker``, an unavailable system also hands the
    conversation to a person when the handoff desk can still record it.
    """
    logger.warning("CRM call failed: %s", type(error).__name__)
    if isinstance(error, Unavailable) and tracker is not None:
        from actions.handoff import start_handoff
        from crm_bridge.handoff import HandoffReason

        try:
            start_handoff(
                dispatcher, tracker, HandoffReason.ACTION_FAILED,
                intro="Sorry, I can't reach our customer records right now. ",
            )  # fmt: skip
            return
        except RapportError:
            pass  # the desk is down too: say so and offer a person later
    if isinstance(error, Unavailable):
        dispatcher.utter_message(response="utter_crm_unavailable")
    elif isinstance(error, InvalidInput):
        dispatcher.utter_message(text=error.message)
    else:
        wording = (text for kind, text in CUSTOMER_WORDING if isinstance(error, kind))
        dispatcher.utter_message(text=next(wording, SOMETHING_WENT_WRONG))
