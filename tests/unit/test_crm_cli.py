"""The CRM command line: what a support lead reads in a terminal."""

from __future__ import annotations

import json

import pytest

from crm_bridge.cli import main
from crm_bridge.gateway import ConversationRef, TicketCategory
from crm_bridge.interaction_log import InteractionLog
from crm_bridge.sql_gateway import SqlCrmGateway
from tests.unit.test_interaction_log import conversation


def run(capsys: pytest.CaptureFixture[str], url: str, *argv: str) -> tuple[int, str, str]:
    code = main(["--database-url", url, *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_show_contact_and_interaction(crm_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    t0 = 1_700_000_000.0
    InteractionLog(crm_url).record_events(conversation("demo-alice", t0))
    SqlCrmGateway.from_url(crm_url).open_ticket(
        ConversationRef("demo-alice", "rest", t0), TicketCategory.COMPLAINT, "Late parcel", ""
    )
    InteractionLog(crm_url).record_events(conversation("demo-alice", t0)[3:4])  # refresh

    code, out, _ = run(capsys, crm_url, "show-contact", "alice@example.com")
    assert code == 0
    assert "Alice Martin" in out and "rest:demo-alice" in out and "10001" in out
    assert "ticket_created" in out

    for ref in ("rest:demo-alice", "1"):
        assert run(capsys, crm_url, "show-contact", ref)[0] == 0

    code, out, _ = run(capsys, crm_url, "show-interaction", "1")
    assert code == 0
    lines = out.splitlines()
    transcript = lines[lines.index("Transcript:") + 1 :]
    assert "customer: hi" in transcript[0] and "[greet 0.90]" in transcript[0]
    assert "bot: Hello! How can I help?" in transcript[1]
    assert "buttons: Order status" in transcript[2]
    assert "T-000001 [complaint] Late parcel" in out

    code, out, _ = run(capsys, crm_url, "show-interaction", "1", "--json")
    data = json.loads(out)
    assert data["outcome"] == "ticket_created"
    assert [line["direction"] for line in data["transcript"]] == ["inbound", "outbound"] * 2

    code, out, _ = run(capsys, crm_url, "list-interactions", "--sender", "demo-alice")
    assert code == 0 and "demo-alice" in out


def test_unknown_things_are_clear_errors(crm_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, crm_url, "show-contact", "nobody@example.com")
    assert code == 1 and "No contact" in err
    code, _, err = run(capsys, crm_url, "show-interaction", "424242")
    assert code == 1 and "No interaction #424242" in err
    code, _, err = run(capsys, crm_url, "show-contact", "gibberish")
    assert code == 1 and "channel:external_id" in err


def test_crm_down_is_reported_without_backend_details(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(
        capsys, "postgresql+psycopg2://postgres:pw@127.0.0.1:1/x", "show-contact", "1"
    )
    assert code == 2 and "unavailable" in err and "pw" not in err


def test_an_interaction_shows_its_handoffs_and_rating(
    crm_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from crm_bridge.handoff import HandbackOutcome, HandoffDesk, HandoffReason

    t0 = 1_700_000_000.0
    InteractionLog(crm_url).record_events(conversation("tg-9", t0))
    desk = HandoffDesk(crm_url)
    handoff = desk.request(ConversationRef("tg-9", "rest", t0), HandoffReason.REPEATED_FALLBACK)
    desk.claim(handoff.id, "U042", "Dana")
    desk.hand_back(handoff.id, "U042", HandbackOutcome.NEEDS_FOLLOW_UP)
    desk.record_csat(handoff.id, 4)
    InteractionLog(crm_url).record_events(conversation("tg-9", t0)[3:4])  # refresh the outcome

    code, out, _ = run(capsys, crm_url, "show-interaction", str(handoff.interaction_id))
    assert code == 0
    [line] = [line for line in out.splitlines() if line.strip().startswith("handoff:")]
    assert "repeated_fallback, closed, Dana (U042)" in line and "outcome needs_follow_up" in line
    assert "csat:     4/5" in out and "outcome:  handed_off" in out
    data = json.loads(run(capsys, crm_url, "show-interaction", "1", "--json")[1])
    [recorded] = data["handoffs"]
    assert recorded["claimed_at"] != "-" and recorded["handed_back_at"] != "-"
    assert (recorded["agent_id"], recorded["csat"], data["csat"]) == ("U042", 4, 4)
