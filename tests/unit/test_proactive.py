"""``can_send``: consent, quiet hours and each channel's own rules, with a fixed ``now``."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from crm_bridge import settings as crm_settings
from crm_bridge.proactive import Reach, best_channel, can_send
from crm_bridge.quiet_hours import QuietHours
from crm_bridge.settings import SettingsError

NIGHT = QuietHours.parse("21:00-08:00", "UTC")
NOON = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)
LATE = datetime(2026, 12, 3, 22, 30, tzinfo=timezone.utc)
EARLY = datetime(2026, 12, 4, 6, 15, tzinfo=timezone.utc)

ALICE = Reach(
    1,
    identities={"telegram": ("555",), "slack": ("T1.U1",), "web": ("web-abc",)},
    open_web_sessions=frozenset(),
)


def test_order_updates_go_by_default_and_marketing_needs_an_opt_in() -> None:
    assert can_send(ALICE, "order_updates", "telegram", NOON).allowed
    refused = can_send(ALICE, "offers", "telegram", NOON)
    assert not refused.allowed and not refused.later
    assert refused.reason == "no consent for offers on telegram"
    opted_in = Reach(1, {("offers", "telegram"): True}, ALICE.identities)
    assert can_send(opted_in, "offers", "telegram", NOON).allowed


def test_an_opt_out_of_order_updates_is_respected() -> None:
    out = Reach(1, {("order_updates", "telegram"): False}, ALICE.identities)
    decision = can_send(out, "order_updates", "telegram", NOON)
    assert not decision.allowed and decision.reason == "no consent for order_updates on telegram"


def test_telegram_only_writes_to_a_private_chat_that_started_the_bot() -> None:
    nobody = Reach(2)
    assert can_send(nobody, "order_updates", "telegram", NOON).reason == (
        "no telegram chat with this customer"
    )
    # A group member's conversation id is chat:user: their order is not the group's.
    group_only = Reach(2, identities={"telegram": ("-100200:77",)})
    assert not can_send(group_only, "order_updates", "telegram", NOON).allowed
    decision = can_send(ALICE, "order_updates", "telegram", NOON)
    assert decision.external_id == "555" and decision.channel == "telegram"


def test_quiet_hours_across_midnight_keep_the_message_until_they_end() -> None:
    late = can_send(ALICE, "order_updates", "telegram", LATE, quiet=NIGHT)
    assert not late.allowed and late.later
    assert late.reason == "quiet hours until 08:00"
    assert late.not_before == datetime(2026, 12, 4, 8, 0, tzinfo=timezone.utc)
    early = can_send(ALICE, "order_updates", "slack", EARLY, quiet=NIGHT)
    assert early.not_before == datetime(2026, 12, 4, 8, 0, tzinfo=timezone.utc)
    assert can_send(ALICE, "order_updates", "telegram", NOON, quiet=NIGHT).allowed


def test_quiet_hours_are_read_in_their_time_zone() -> None:
    berlin = QuietHours.parse("21:00-08:00", "Europe/Berlin")
    # 20:30 UTC is 21:30 in Berlin in December (UTC+1).
    at = datetime(2026, 12, 3, 20, 30, tzinfo=timezone.utc)
    decision = can_send(ALICE, "order_updates", "telegram", at, quiet=berlin)
    assert decision.reason == "quiet hours until 08:00"
    assert decision.not_before == datetime(2026, 12, 4, 7, 0, tzinfo=timezone.utc)
    daytime = QuietHours.parse("12:00-13:00")
    assert daytime.until(NOON) == datetime(2026, 12, 3, 13, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("spec", ["21-08", "25:00-08:00", "21:00", "08:00-08:00"])
def test_bad_quiet_hours_are_refused_naming_the_variable(spec: str) -> None:
    with pytest.raises(SettingsError, match="QUIET_HOURS"):
        QuietHours.parse(spec)
    with pytest.raises(SettingsError, match="QUIET_HOURS"):
        crm_settings.load({"QUIET_HOURS": spec})


def test_quiet_hours_settings() -> None:
    settings = crm_settings.load({"QUIET_HOURS": "22:00-07:30", "QUIET_HOURS_TIMEZONE": "UTC"})
    assert QuietHours.parse(settings.quiet_hours, settings.quiet_hours_timezone).until(LATE)
    with pytest.raises(SettingsError, match="QUIET_HOURS_TIMEZONE"):
        crm_settings.load({"QUIET_HOURS_TIMEZONE": "Mars/Olympus"})
    assert QuietHours.parse("").until(LATE) is None


def test_web_chat_only_while_a_session_is_open_otherwise_kept() -> None:
    kept = can_send(ALICE, "order_updates", "web", NOON)
    assert not kept.allowed and kept.later and kept.not_before is None
    assert kept.reason == "no open web chat session (kept for the next visit)"
    visiting = Reach(1, identities=ALICE.identities, open_web_sessions=frozenset({"web-abc"}))
    # An open page wakes nobody: quiet hours do not hold a web chat message back.
    decision = can_send(visiting, "order_updates", "web", LATE, quiet=NIGHT)
    assert decision.allowed and decision.external_id == "web-abc"


def test_channels_that_cannot_carry_a_proactive_message() -> None:
    assert "cannot carry" in can_send(ALICE, "order_updates", "rest", NOON).reason
    assert can_send(ALICE, "gossip", "telegram", NOON).reason == "unknown topic gossip"


def test_one_channel_per_customer_the_most_recent_that_may_carry_it() -> None:
    assert best_channel(ALICE, "order_updates", NOON).channel == "telegram"
    # Quiet on Telegram and Slack, but the customer has the web chat open: it goes there.
    visiting = Reach(1, identities=ALICE.identities, open_web_sessions=frozenset({"web-abc"}))
    assert best_channel(visiting, "order_updates", LATE, quiet=NIGHT).channel == "web"
    later = best_channel(ALICE, "order_updates", LATE, quiet=NIGHT)
    assert later.later and later.channel == "telegram"
    refused = best_channel(ALICE, "offers", NOON)
    assert not refused.allowed and not refused.later
    assert "no consent for offers on telegram" in refused.reason
    assert "no consent for offers on web" in refused.reason
    assert best_channel(Reach(3), "order_updates", NOON).reason == (
        "no telegram, slack or web chat with this customer"
    )
    only_slack = best_channel(ALICE, "order_updates", NOON, channels=["slack"])
    assert only_slack.channel == "slack"
