"""The agents' Slack helpers: ``/handback`` arguments, Slack's escaping, message blocks."""

from __future__ import annotations

from bot.agent_console import HandoffSummary, handback_blocks, summary_blocks, without_buttons
from connectors.slack_agents import parse_handback
from connectors.slack_markup import plain_text
from crm_bridge.handoff import HandbackOutcome


def test_handback_arguments() -> None:
    assert parse_handback("") == (None, HandbackOutcome.RESOLVED)
    assert parse_handback("#12 follow-up") == (12, HandbackOutcome.NEEDS_FOLLOW_UP)
    assert parse_handback("needs follow up 7") == (7, HandbackOutcome.NEEDS_FOLLOW_UP)
    assert parse_handback("resolved") == (None, HandbackOutcome.RESOLVED)


def test_an_agents_slack_markup_is_undone_for_the_customer() -> None:
    # The same decoding as customers' Slack messages (connectors.slack_markup).
    assert plain_text("Tom &amp; Jerry &lt;3 &gt;") == "Tom & Jerry <3 >"
    assert plain_text("track it <https://dpd.example/t/1|here>") == "track it here"


def test_a_claimed_summary_keeps_its_facts_and_loses_its_button() -> None:
    summary = HandoffSummary(
        handoff_id=3, reason="repeated_fallback", channel="web", recent=[("Customer", "x" * 900)]
    )
    blocks = summary_blocks(summary)
    assert blocks[-1]["elements"][0]["value"] == "3"
    assert "did not understand the customer twice" in blocks[1]["text"]["text"]
    assert len(blocks[2]["text"]["text"]) < 400  # long messages are clipped
    claimed = without_buttons(blocks, "Claimed by Dana")
    assert [b["type"] for b in claimed] == ["header", "section", "section", "context"]
    outcomes = [e["action_id"] for e in handback_blocks(3, "Dana")[1]["elements"]]
    assert outcomes == [
        "rapport_handoff_handback_resolved",
        "rapport_handoff_handback_needs_follow_up",
    ]
