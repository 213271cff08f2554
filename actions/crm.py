"""What the actions work with, built on first use (never at import time): the CRM
gateway, the handoff desk, the agents' Slack channel and the business hours."""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING

from crm_bridge import settings as crm_settings
from crm_bridge.gateway import CrmGateway

if TYPE_CHECKING:
    from bot.agent_console import SlackAgentConsole
    from bot.business_hours import BusinessHours
    from bot.handoff_service import HandoffService
    from crm_bridge.handoff import HandoffDesk
    from crm_bridge.identity_proof import IdentityProofs

logger = logging.getLogger(__name__)


def crm_url() -> str:
    """CRM_DATABASE_URL with the timeouts of a customer's turn: a CRM that does not answer
    within 2 s becomes the polite "can't reach our records" answer with a person offered,
    never a turn that hangs."""
    from crm_bridge.db import with_customer_timeouts

    return with_customer_timeouts(crm_settings.database_url())


@functools.lru_cache(maxsize=1)
def get_gateway() -> CrmGateway:
    """The gateway for CRM_DATABASE_URL (SQLite under var/ by default), built once; with a
    remote CRM_BACKEND its writes also go to the outbox."""
    from crm_bridge.sql_gateway import SqlCrmGateway

    settings = crm_settings.load()
    return SqlCrmGateway.from_url(crm_url(), outbox_backend=settings.crm_backend)


@functools.lru_cache(maxsize=1)
def get_handoff_desk() -> HandoffDesk:
    """Conversation ownership (bot / queued / agent) in the same CRM, built once."""
    from crm_bridge.handoff import HandoffDesk

    return HandoffDesk(crm_url())


@functools.lru_cache(maxsize=1)
def get_agent_console() -> SlackAgentConsole | None:
    """The agents' Slack channel, when configured (built on first use)."""
    from bot.agent_console import SlackAgentConsole

    return SlackAgentConsole.from_environment()


@functools.lru_cache(maxsize=1)
def get_business_hours() -> BusinessHours:
    """BUSINESS_HOURS / BUSINESS_TIMEZONE (always open when unset)."""
    from bot import settings as bot_settings
    from bot.business_hours import BusinessHours

    settings = bot_settings.current()
    return BusinessHours.parse(settings.business_hours, settings.business_timezone)


@functools.lru_cache(maxsize=1)
def get_handoff_service() -> HandoffService:
    """The handoff use cases, with the collaborators above (no customer channels here:
    the action answers within the turn)."""
    from bot.handoff_service import HandoffService

    return HandoffService(
        desk=get_handoff_desk(),
        gateway=get_gateway(),
        console=get_agent_console(),
        hours=get_business_hours(),
    )


@functools.lru_cache(maxsize=1)
def get_identity_proofs() -> IdentityProofs:
    """Email codes, deep links, shop logins and phone contacts, checked against the CRM."""
    from crm_bridge.db import session_factory
    from crm_bridge.identity_proof import IdentityProofs
    from crm_bridge.link_tokens import LinkTokens, identity_secret
    from crm_bridge.mailer import mailer_from_settings
    from crm_bridge.one_time_codes import OneTimeCodes

    settings = crm_settings.load()
    factory = session_factory(crm_url())
    secret = identity_secret(settings)
    return IdentityProofs(
        gateway=get_gateway(),
        codes=OneTimeCodes(factory, mailer_from_settings(settings), secret),
        links=LinkTokens(factory, secret),
        shop_token_secret=settings.shop_token_secret,
    )


def reset_gateway() -> None:
    """Forget the gateway and its companions, so the next call reads the environment
    again (tests, reloads)."""
    get_gateway.cache_clear()
    get_identity_proofs.cache_clear()
    get_handoff_service.cache_clear()
    get_handoff_desk.cache_clear()
    get_agent_console.cache_clear()
    get_business_hours.cache_clear()
