"""End-to-end fixtures: a trained model (shared by the whole run) and real Rasa + action
servers on loopback ports, with a fresh seeded SQLite CRM."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

# BotServers and the start/stop helpers are imported from here by the e2e tests.
from bench.servers import (
    BotServers,
    start_bot_servers,
    stop_processes,
)
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.telegram_api import FakeTelegramApi


@pytest.fixture(scope="session")
def trained_model() -> Path:
    """Train once per run (or reuse the model whose fingerprint matches the inputs)."""
    from bot.train import train_if_needed

    return train_if_needed()


TELEGRAM_TOKEN = "123456:TEST-token"
TELEGRAM_SECRET = "telegram-secret-for-tests"


@pytest.fixture(scope="session")
def fake_telegram() -> Iterator[FakeTelegramApi]:
    """The Telegram Bot API stand-in the servers talk to."""
    api = FakeTelegramApi(TELEGRAM_TOKEN).start()
    yield api
    api.stop()


SLACK_SIGNING_SECRET = "slack-signing-secret-for-tests"
AGENT_API_TOKEN = "agent-api-token-for-tests"
SHOP_TOKEN_SECRET = "shop-token-secret-for-tests-0123456789"
SLACK_AGENT_CHANNEL = "CAGENTS0001"


def agent_api(
    servers: BotServers, method: str, path: str, token: str | None = None, **body: Any
) -> requests.Response:
    """One agent API request, as an agent console makes it (``token=""`` sends none)."""
    token = AGENT_API_TOKEN if token is None else token
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.request(
        method,
        f"{servers.rasa_url}/agents/api{path}",
        json=body or None,
        headers=headers,
        timeout=30,
    )


def listed_handoff(servers: BotServers, sender: str) -> dict[str, Any]:
    """The live handoff of this conversation, as the agent API lists it."""
    handoffs = agent_api(servers, "GET", "/handoffs").json()["handoffs"]
    [handoff] = [h for h in handoffs if h["sender_id"] == sender]
    return dict(handoff)


@pytest.fixture(scope="session")
def fake_slack() -> Iterator[FakeSlackApi]:
    """The Slack Web API stand-in the servers talk to."""
    api = FakeSlackApi().start()
    yield api
    api.stop()


@pytest.fixture(scope="session")
def bot_servers(
    trained_model: Path,
    tmp_path_factory: pytest.TempPathFactory,
    fake_telegram: FakeTelegramApi,
    fake_slack: FakeSlackApi,
) -> Iterator[BotServers]:
    """Rasa + action servers with the embedded defaults (SQLite CRM, in-process log),
    the web chat, and Telegram and Slack pointed at their fake APIs."""
    channels_env = {
        "AGENT_API_TOKEN": AGENT_API_TOKEN,
        "SHOP_TOKEN_SECRET": SHOP_TOKEN_SECRET,
        "SLACK_BOT_TOKEN": "xoxb-test-token",
        "SLACK_SIGNING_SECRET": SLACK_SIGNING_SECRET,
        "SLACK_API_BASE_URL": fake_slack.base_url,
        "SLACK_AGENT_CHANNEL": SLACK_AGENT_CHANNEL,
        "TELEGRAM_TOKEN": TELEGRAM_TOKEN,
        "TELEGRAM_SECRET_TOKEN": TELEGRAM_SECRET,
        "TELEGRAM_API_BASE_URL": fake_telegram.base_url,
        "TELEGRAM_WEBHOOK_URL": "https://bot.example.test/webhooks/telegram/webhook",
        "TELEGRAM_CHAT_INTERVAL_SECONDS": "0.05",
    }
    servers, processes = start_bot_servers(
        trained_model, tmp_path_factory.mktemp("bot"), channels_env
    )
    yield servers
    stop_processes(processes)
    assert_no_customer_text_in_logs(servers)


EMAIL_IN_LOG = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
PHONE_IN_LOG = re.compile(r"\+?44[ ()-]*7700[ ()-]*900[ ()-]*\d{3}")
# Shorter texts ("hi", "10001") also occur in log lines by chance.
MIN_CHECKED_TEXT_CHARS = 12


def assert_no_customer_text_in_logs(servers: BotServers) -> None:
    """At the default level no server logs a customer's words (checked after the run)."""
    from connectors.normalise import normalise

    logs = "\n".join(path.read_text(errors="replace") for path in servers.log_dir.glob("*.log"))
    texts = {normalise(text)[:200] for text in servers.said}
    leaked = sorted(
        text
        for text in texts
        if len(text) >= MIN_CHECKED_TEXT_CHARS and not text.startswith("/") and text in logs
    )
    assert leaked == [], f"customer texts in the server logs: {leaked[:5]}"
    # Nor any email address or phone number (the tests' customers use the +44 7700 900xxx
    # range kept for drama), whoever wrote it: a customer, the CRM or a code mail.
    addresses = sorted(set(EMAIL_IN_LOG.findall(logs)) | set(PHONE_IN_LOG.findall(logs)))
    assert addresses == [], f"emails or phone numbers in the server logs: {addresses[:5]}"
