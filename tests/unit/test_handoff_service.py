"""The handoff service's request, one test per outcome, on a real SQLite CRM (the other
transitions are driven through the agent API and Slack in tests/e2e)."""

from __future__ import annotations

import time

import pytest

from bot.business_hours import BusinessHours
from bot.handoff_service import HandoffAsk, HandoffService
from crm_bridge.errors import CrmUnavailable
from crm_bridge.gateway import ConversationRef
from crm_bridge.handoff import HandoffDesk, HandoffReason
from crm_bridge.sql_gateway import SqlCrmGateway

ALWAYS = BusinessHours.parse("")
NEVER = BusinessHours.parse("mon 00:00-00:01")  # closed but for one minute a week


def service(crm_url: str, hours: BusinessHours = ALWAYS) -> HandoffService:
    return HandoffService(
        desk=HandoffDesk(crm_url),
        gateway=SqlCrmGateway.from_url(crm_url),
        console=None,
        hours=hours,
    )


def ask(sender: str, reason: HandoffReason = HandoffReason.CUSTOMER_REQUEST) -> HandoffAsk:
    return HandoffAsk(
        ConversationRef(sender, "telegram", time.time()), reason, recent=[("Customer", "help")]
    )


def test_a_request_is_queued_with_a_ticket(crm_url: str) -> None:
    answer = service(crm_url).request(ask("tg-q"))
    assert (answer.state, answer.position) == ("queued", 1)
    assert answer.ticket_reference and answer.ticket_reference.startswith("T-")
    assert HandoffDesk(crm_url).ownership("tg-q").owner == "queued"


def test_a_second_request_finds_the_first(crm_url: str) -> None:
    service(crm_url).request(ask("tg-a"))
    again = service(crm_url).request(ask("tg-a"))
    assert (again.state, again.position) == ("already", 1)
    assert len(HandoffDesk(crm_url).list()) == 1


def test_outside_business_hours_a_ticket_waits_for_the_opening(crm_url: str) -> None:
    answer = service(crm_url, NEVER).request(ask("tg-o"))
    assert answer.state == "offline" and answer.next_opening is not None
    assert answer.ticket_reference is not None
    assert HandoffDesk(crm_url).ownership("tg-o").owner == "bot"  # nobody would watch a queue


def test_without_a_ticket_nothing_is_promised_out_of_hours(crm_url: str) -> None:
    def broken(hours: BusinessHours) -> HandoffService:
        # The tickets' database is gone; the handoff desk still works.
        return HandoffService(
            desk=HandoffDesk(crm_url),
            gateway=SqlCrmGateway.from_url("sqlite:////nonexistent/dir/crm.db"),
            console=None,
            hours=hours,
        )

    with pytest.raises(CrmUnavailable):
        broken(NEVER).request(ask("tg-f", HandoffReason.ACTION_FAILED))
    # In business hours the person still comes, without a ticket.
    answer = broken(ALWAYS).request(ask("tg-f", HandoffReason.ACTION_FAILED))
    assert (answer.state, answer.ticket_reference) == ("queued", None)
