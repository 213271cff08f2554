"""Proactive messages against real HTTP stand-ins of the Telegram and Slack APIs on
127.0.0.1 and a PostgreSQL CRM: the platforms' rate limits hold at the platform under a
burst, a 429 is waited out, an opt-out is respected, the CLI and the agent API's
``POST /agents/api/notify`` work end to end."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from itertools import pairwise
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from bot import notify as notify_cli
from bot import settings as bot_settings
from bot.notify import notify
from bot.notify_senders import build_senders
from crm_bridge import models
from crm_bridge.consent import ConsentBook
from crm_bridge.db import session_factory, unit_of_work
from crm_bridge.notifications import NotificationQueue
from crm_bridge.quiet_hours import QuietHours
from tests.fakes.http_api import Call
from tests.fakes.slack_api import TEAM_ID, FakeSlackApi
from tests.fakes.telegram_api import FakeTelegramApi

pytestmark = pytest.mark.integration

TOKEN = "4242:notify-test-token"
AGENT_TOKEN = "agent-token-for-notify-tests"


@pytest.fixture
def telegram() -> Iterator[FakeTelegramApi]:
    api = FakeTelegramApi(TOKEN)
    api.start()
    yield api
    api.stop()


@pytest.fixture
def slack() -> Iterator[FakeSlackApi]:
    api = FakeSlackApi()
    api.start()
    yield api
    api.stop()


@pytest.fixture
def settings(
    postgres_crm_url: str,
    telegram: FakeTelegramApi,
    slack: FakeSlackApi,
    monkeypatch: pytest.MonkeyPatch,
) -> bot_settings.Settings:
    env = {
        "CRM_DATABASE_URL": postgres_crm_url,
        "TELEGRAM_TOKEN": TOKEN,
        "TELEGRAM_API_BASE_URL": telegram.base_url,
        "SLACK_BOT_TOKEN": "xoxb-notify-test",
        "SLACK_SIGNING_SECRET": "s" * 32,
        "SLACK_API_BASE_URL": slack.base_url,
        "AGENT_API_TOKEN": AGENT_TOKEN,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("REDIS_URL", "QUIET_HOURS", "SLACK_AGENT_CHANNEL"):
        monkeypatch.delenv(name, raising=False)
    bot_settings.current.cache_clear()
    return bot_settings.current()


@pytest.fixture
def factory(settings: bot_settings.Settings) -> sessionmaker:
    return session_factory(settings.crm.database_url)


def add_customers(factory: sessionmaker, channel: str, ids: list[str], topic: str) -> list[int]:
    """Contacts who talked to us on ``channel`` and opted in to ``topic`` there."""
    contacts = []
    with unit_of_work(factory) as session:
        for n, external_id in enumerate(ids):
            contact = models.Contact(name=f"Burst {n}", email=f"burst{n}.{channel}@example.com")
            session.add(contact)
            session.flush()
            session.add(
                models.ChannelIdentity(
                    channel=channel, external_id=external_id, contact_id=contact.id
                )
            )
            contacts.append(contact.id)
    book = ConsentBook(factory)
    for contact_id in contacts:
        book.record(contact_id, topic, channel, True, f"Send me {topic} here", "import")
    return contacts


def max_in_window(calls: list[Call], window: float) -> int:
    """The most calls that arrived within any half-open window [t, t + window)."""
    times = sorted(c.at for c in calls)
    return max(sum(1 for u in times[i:] if u < t + window) for i, t in enumerate(times))


def deliver_all(settings: bot_settings.Settings, queue: NotificationQueue) -> Any:
    async def run() -> Any:
        senders = build_senders(settings)
        try:
            return await notify(queue, senders, QuietHours())
        finally:
            for sender in senders.values():
                await sender.close()

    return asyncio.run(run())


def test_a_telegram_burst_keeps_to_30_a_second_and_1_a_second_per_chat(
    settings: bot_settings.Settings, factory: sessionmaker, telegram: FakeTelegramApi
) -> None:
    chats = [str(700000 + n) for n in range(20)]
    contacts = add_customers(factory, "telegram", chats, "offers")
    queue = NotificationQueue(factory)
    for n in range(3):
        campaign = queue.campaign_messages("offers", f"Offer number {n}", f"burst-{n}")
        queue.plan([m for m in campaign if m.contact_id in contacts])

    report = deliver_all(settings, queue)

    assert [r.status for r in report.results].count("sent") == 60
    sends = telegram.calls_to("sendMessage")
    assert len(sends) == 60
    assert max_in_window(sends, 1.0) <= 30
    for chat in chats:
        times = [c.at for c in sends if str(c.params["chat_id"]) == chat]
        assert len(times) == 3
        assert all(later - earlier >= 1.0 for earlier, later in pairwise(times))
    with unit_of_work(factory) as session:
        logged = session.execute(
            select(func.count())
            .select_from(models.Interaction)
            .where(models.Interaction.contact_id.in_(contacts))
        ).scalar_one()
    assert logged == 60  # one outbound Interaction per message sent


def test_slack_keeps_to_about_one_a_second_per_conversation(
    settings: bot_settings.Settings, factory: sessionmaker, slack: FakeSlackApi
) -> None:
    users = [f"{TEAM_ID}.U0BURST{n}" for n in range(2)]
    contacts = add_customers(factory, "slack", users, "newsletter")
    queue = NotificationQueue(factory)
    for n in range(6):
        letter = queue.campaign_messages("newsletter", f"Letter {n}", f"letter-{n}")
        queue.plan([m for m in letter if m.contact_id in contacts])

    report = deliver_all(settings, queue)

    assert [r.status for r in report.results] == ["sent"] * 12
    for user in users:
        posts = slack.calls_to("chat.postMessage", channel=user.split(".", 1)[1])
        assert len(posts) == 6
        assert max_in_window(posts, 3.0) <= 3  # a short burst, then one a second
        assert posts[-1].at - posts[0].at >= 3.0


def test_a_telegram_429_is_waited_out(
    settings: bot_settings.Settings, factory: sessionmaker, telegram: FakeTelegramApi
) -> None:
    [contact] = add_customers(factory, "telegram", ["810001"], "offers")
    queue = NotificationQueue(factory)
    [message] = [
        m for m in queue.campaign_messages("offers", "Hi", "once") if m.contact_id == contact
    ]
    queue.plan([message])
    telegram.rate_limit_next_sends, telegram.retry_after_seconds = 1, 1

    report = deliver_all(settings, queue)

    assert [r.status for r in report.results] == ["sent"]
    [refused] = telegram.calls_to("sendMessage#429")
    [sent] = telegram.calls_to("sendMessage")
    assert sent.at - refused.at >= 1.0


def test_the_cli_lists_a_dry_run_sends_and_respects_an_opt_out(
    settings: bot_settings.Settings,
    factory: sessionmaker,
    telegram: FakeTelegramApi,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with unit_of_work(factory) as session:
        emails = {c.email: c.id for c in session.execute(select(models.Contact)).scalars()}
        for email, chat in (("alice@example.com", "900001"), ("bob@example.com", "900002")):
            session.add(
                models.ChannelIdentity(
                    channel="telegram", external_id=chat, contact_id=emails[email]
                )
            )
    ConsentBook(factory).record(
        emails["bob@example.com"], "order_updates", "*", False, "No order messages", "cli"
    )

    assert notify_cli.main(["--topic", "order_updates", "--order", "10001", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "Dry run" in out and "Would send now (1)" in out and "on telegram" in out
    assert "Alice" not in out and "alice@" not in out
    assert telegram.calls_to("sendMessage") == []

    assert notify_cli.main(["--topic", "order_updates", "--order", "10001"]) == 0
    assert "Sent (1)" in capsys.readouterr().out
    [sent] = telegram.calls_to("sendMessage")
    assert sent.params["chat_id"] == 900001 and "10001" in sent.params["text"]

    assert notify_cli.main(["--topic", "order_updates", "--order", "10003"]) == 0
    out = capsys.readouterr().out
    assert "Not sent (1)" in out and "no consent for order_updates on telegram" in out
    assert telegram.calls_to("sendMessage", chat_id=900002) == []

    assert notify_cli.main(["--status"]) == 0
    assert "sent" in capsys.readouterr().out
    assert notify_cli.main(["--topic", "order_updates"]) == 2
    assert "order number" in capsys.readouterr().err


def test_the_agent_api_endpoint_needs_the_token_and_runs_the_same_service(
    settings: bot_settings.Settings, factory: sessionmaker, telegram: FakeTelegramApi
) -> None:
    from connectors.agent_api import AgentApiChannel

    add_customers(factory, "telegram", ["920001"], "offers")
    channel = AgentApiChannel()
    endpoint = channel._authorised(channel.notify)

    def post(body: dict[str, Any], token: str = AGENT_TOKEN) -> tuple[int, dict[str, Any]]:
        request = SimpleNamespace(
            headers={"Authorization": f"Bearer {token}"},
            body=json.dumps(body).encode(),
            method="POST",
            path="/agents/api/notify",
        )
        answer = asyncio.run(endpoint(request))
        return answer.status, json.loads(answer.body or b"{}")

    assert post({"topic": "offers", "text": "x"}, token="wrong")[0] == 401
    status, report = post({"topic": "offers", "text": "Winter sale", "dry_run": True})
    assert status == 200 and report["dry_run"] and report["results"] == []
    assert [p["allowed_now"] for p in report["planned"]].count(True) == 1
    assert telegram.calls_to("sendMessage") == []
    status, report = post({"topic": "offers", "text": "Winter sale"})
    assert status == 200 and [r["status"] for r in report["results"]] == ["sent"]
    assert telegram.calls_to("sendMessage", chat_id=920001)
    assert post({"topic": "offers"})[0] == 400
    assert post({"topic": "offers", "text": "y", "channels": "telegram"})[0] == 400
