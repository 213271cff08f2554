"""The notification queue and ``notify`` on a real SQLite CRM: idempotent plans, consent
checked again at send time, back-off, kept web chat messages, the outbound Interaction."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from bot.notify import notify, render
from bot.notify_senders import RateLimited, SendError
from crm_bridge import models
from crm_bridge.consent import ConsentBook
from crm_bridge.db import session_factory, unit_of_work
from crm_bridge.errors import InvalidInput
from crm_bridge.notifications import MAX_ATTEMPTS, NotificationQueue, campaign_reference
from crm_bridge.pacing import Pacer
from crm_bridge.quiet_hours import QuietHours

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)
NO_QUIET = QuietHours()


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class FakeSender:
    """Records sends; can fail or answer 429 for the next calls."""

    def __init__(self) -> None:
        self.pacer = Pacer()
        self.sent: list[tuple[str, str]] = []
        self.failures: list[Exception] = []

    async def send(self, external_id: str, text: str) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append((external_id, text))

    async def close(self) -> None:
        pass


@pytest.fixture
def factory(crm_url: str) -> sessionmaker:
    return session_factory(crm_url)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def queue(factory: sessionmaker, clock: Clock) -> NotificationQueue:
    return NotificationQueue(factory, now=clock)


def contact_id(factory: sessionmaker, email: str) -> int:
    with unit_of_work(factory) as session:
        return int(
            session.execute(
                select(models.Contact.id).where(models.Contact.email == email)
            ).scalar_one()
        )


def link(factory: sessionmaker, contact: int, channel: str, external_id: str) -> None:
    with unit_of_work(factory) as session:
        session.add(
            models.ChannelIdentity(
                channel=channel, external_id=external_id, contact_id=contact, verified_at=T0
            )
        )


def run_notify(queue: NotificationQueue, senders: dict, messages=None, **kwargs):
    return asyncio.run(notify(queue, senders, NO_QUIET, messages, **kwargs))


def test_an_order_update_is_planned_once_and_sent_once(
    queue: NotificationQueue, factory: sessionmaker
) -> None:
    alice = contact_id(factory, "alice@example.com")
    link(factory, alice, "telegram", "555")
    message = queue.order_message("10001")
    assert message.reference == "order:10001:shipped"
    assert message.text.startswith("Your order 10001 has shipped with DPD.")
    assert "Alice" not in message.text and "@" not in message.text

    dry = queue.plan([message], dry_run=True)
    assert dry[0].decision.allowed and dry[0].notification_id is None
    assert queue.list() == []

    telegram = FakeSender()
    report = run_notify(queue, {"telegram": telegram}, [message])
    assert telegram.sent == [("555", message.text)]
    assert [r.status for r in report.results] == ["sent"]
    again = run_notify(queue, {"telegram": telegram}, [message])
    assert again.planned[0].existing and again.results == []
    assert len(telegram.sent) == 1
    assert "Already planned earlier (1)" in render(again)


def test_a_sent_message_is_an_outbound_interaction_on_the_timeline(
    queue: NotificationQueue, factory: sessionmaker
) -> None:
    alice = contact_id(factory, "alice@example.com")
    link(factory, alice, "telegram", "555")
    report = run_notify(queue, {"telegram": FakeSender()}, [queue.order_message("10001")])
    sent = report.results[0].notification
    with unit_of_work(factory) as session:
        interaction = session.execute(
            select(models.Interaction).where(models.Interaction.contact_id == alice)
        ).scalar_one()
        assert interaction.sender_id == f"notification:{sent.id}"
        assert interaction.channel == "telegram" and interaction.closed
        assert interaction.outcome == "notification"
        [line] = interaction.messages
        assert (line.direction, line.author, line.text) == ("outbound", "bot", sent.text)


def test_opt_out_is_respected_when_planning_and_again_when_sending(
    queue: NotificationQueue, factory: sessionmaker, clock: Clock
) -> None:
    alice = contact_id(factory, "alice@example.com")
    link(factory, alice, "telegram", "555")
    book = ConsentBook(factory, now=clock)
    book.record(alice, "order_updates", "*", False, "Stop sending me order updates", "cli")
    telegram = FakeSender()
    report = run_notify(queue, {"telegram": telegram}, [queue.order_message("10001")])
    assert telegram.sent == [] and queue.list() == []
    assert report.planned[0].decision.reason == "no consent for order_updates on telegram"
    assert "Not sent (1)" in render(report)

    # Planned while allowed, withdrawn before the send: not sent, and reported.
    clock.now += timedelta(minutes=1)
    book.record(alice, "order_updates", "*", True, "Yes, tell me about my orders", "cli")
    queue.plan([queue.order_message("10001")])
    clock.now += timedelta(minutes=1)
    book.record(alice, "order_updates", "telegram", False, "Not on Telegram", "chat")
    report = run_notify(queue, {"telegram": telegram})
    assert telegram.sent == []
    assert report.results[0].status == "failed"
    assert report.results[0].reason == "not sent: no consent for order_updates on telegram"


def test_a_campaign_reaches_only_those_who_opted_in(
    queue: NotificationQueue, factory: sessionmaker, clock: Clock
) -> None:
    alice = contact_id(factory, "alice@example.com")
    bob = contact_id(factory, "bob@example.com")
    link(factory, alice, "telegram", "555")
    link(factory, bob, "slack", "T1.U2")
    ConsentBook(factory, now=clock).record(bob, "offers", "slack", True, "Offers? Yes", "chat")
    messages = queue.campaign_messages("offers", "20% off rain jackets this week")
    assert len({m.reference for m in messages}) == 1 and len(messages) >= 3
    assert messages[0].reference == campaign_reference("offers", "20% off rain jackets this week")
    slack, telegram = FakeSender(), FakeSender()
    report = run_notify(queue, {"slack": slack, "telegram": telegram}, messages)
    assert slack.sent == [("T1.U2", "20% off rain jackets this week")] and telegram.sent == []
    reasons = {p.message.contact_id: p.decision.reason for p in report.planned}
    assert reasons[alice] == "no consent for offers on telegram"
    with pytest.raises(InvalidInput):
        queue.campaign_messages("offers", "   ")
    assert campaign_reference("offers", "x", "Spring Sale!") == "campaign:spring-sale"


def test_failures_are_retried_with_back_off_then_reported(
    queue: NotificationQueue, factory: sessionmaker, clock: Clock
) -> None:
    alice = contact_id(factory, "alice@example.com")
    link(factory, alice, "telegram", "555")
    telegram = FakeSender()
    telegram.failures = [SendError("telegram 500: boom")] * MAX_ATTEMPTS
    run_notify(queue, {}, [queue.order_message("10001")], dry_run=True)
    report = run_notify(queue, {"telegram": telegram}, [queue.order_message("10001")])
    waits = []
    while report.results and report.results[0].status == "retrying":
        row = report.results[0].notification
        waits.append(row.next_attempt_at - clock.now)
        assert run_notify(queue, {"telegram": telegram}).results == []  # not due yet
        clock.now = row.next_attempt_at
        report = run_notify(queue, {"telegram": telegram})
    assert waits == [timedelta(seconds=30 * 2**n) for n in range(MAX_ATTEMPTS - 1)]
    [result] = report.results
    assert result.status == "failed" and "gave up after 6 attempts" in result.reason
    assert queue.list()[0].status == "failed" and queue.list()[0].last_error == "telegram 500: boom"


def test_a_channel_without_a_sender_is_a_failed_attempt_not_a_silent_drop(
    queue: NotificationQueue, factory: sessionmaker
) -> None:
    link(factory, contact_id(factory, "alice@example.com"), "telegram", "555")
    report = run_notify(queue, {}, [queue.order_message("10001")])
    assert report.results[0].status == "retrying"
    assert "telegram is not configured" in report.results[0].reason


def test_a_429_is_waited_out_and_the_message_still_goes(
    queue: NotificationQueue, factory: sessionmaker
) -> None:
    link(factory, contact_id(factory, "alice@example.com"), "telegram", "555")
    telegram = FakeSender()
    telegram.failures = [RateLimited("telegram", 0.05)]
    report = run_notify(queue, {"telegram": telegram}, [queue.order_message("10001")])
    assert report.results[0].status == "sent" and len(telegram.sent) == 1
    assert report.results[0].notification.attempts == 1
    telegram.failures = [RateLimited("telegram", 0.01)] * 3
    link(factory, contact_id(factory, "bob@example.com"), "telegram", "556")
    report = run_notify(queue, {"telegram": telegram}, [queue.order_message("10003")])
    assert report.results[0].status == "retrying"
    assert report.results[0].notification.attempts == 0  # a 429 is not a failed attempt


def test_quiet_hours_keep_the_message_until_they_end(
    queue: NotificationQueue, factory: sessionmaker, clock: Clock
) -> None:
    link(factory, contact_id(factory, "alice@example.com"), "telegram", "555")
    quiet = QuietHours.parse("21:00-08:00")
    clock.now = datetime(2026, 12, 3, 22, 0, tzinfo=timezone.utc)
    telegram = FakeSender()
    message = queue.order_message("10001")
    asyncio.run(notify(queue, {"telegram": telegram}, quiet, [message]))
    [row] = queue.list()
    assert row.status == "waiting" and row.last_error == "quiet hours until 08:00"
    assert row.next_attempt_at == datetime(2026, 12, 4, 8, 0, tzinfo=timezone.utc)
    clock.now = row.next_attempt_at
    report = asyncio.run(notify(queue, {"telegram": telegram}, quiet))
    assert report.results[0].status == "sent" and len(telegram.sent) == 1


def test_web_chat_messages_wait_for_an_open_session(
    queue: NotificationQueue, factory: sessionmaker, clock: Clock
) -> None:
    from bot.notify_senders import WebSender
    from bot.web_inbox import WebInbox

    alice = contact_id(factory, "alice@example.com")
    link(factory, alice, "web", "web-abc")
    inbox = WebInbox()
    web = WebSender(inbox)
    report = run_notify(queue, {"web": web}, [queue.order_message("10001")])
    assert report.planned[0].decision.later
    [row] = queue.list()
    assert row.status == "waiting"
    assert row.last_error == "no open web chat session (kept for the next visit)"
    # The customer comes back: an open conversation session on the web chat.
    clock.now += timedelta(minutes=10)
    with unit_of_work(factory) as session:
        session.add(
            models.Interaction(
                sender_id="web-abc",
                session_key="1",
                channel="web",
                contact_id=alice,
                started_at=clock.now,
                ended_at=clock.now,
            )
        )
    report = run_notify(queue, {"web": web})
    assert report.results[0].status == "sent"
    assert asyncio.run(inbox.take("web-abc")) == [{"text": row.text}]


def test_a_taken_row_is_not_handed_to_a_second_deliverer(queue: NotificationQueue, factory) -> None:
    link(factory, contact_id(factory, "alice@example.com"), "telegram", "555")
    queue.plan([queue.order_message("10001")])
    assert len(queue.take_due()) == 1
    assert queue.take_due() == []


def test_the_worker_mode_needs_deliver_and_a_sane_interval(capsys) -> None:
    from bot.notify import main

    assert main(["--every", "30"]) == 2
    assert main(["--deliver", "--every", "0.1"]) == 2
    assert "--every needs --deliver" in capsys.readouterr().err
