"""A few hundred generated messages through each channel (REST, web chat, Telegram,
Slack): random Unicode, long, empty, mixed scripts, markup, SQL and HTML snippets.

For every message: the documented HTTP status, at least one reply, the transcript line
the inbound step promises (normalised, or cut and marked), and no traceback in the
servers' logs while the messages were processed."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from connectors.inbound import screen
from connectors.slack_markup import plain_text
from tests.e2e.conftest import BotServers
from tests.e2e.test_inbound_channels import transcript
from tests.e2e.test_slack import dm, posts_to, signed_post
from tests.e2e.test_telegram import message_update, post
from tests.fakes.slack_api import TEAM_ID, FakeSlackApi
from tests.fakes.telegram_api import FakeTelegramApi

pytestmark = pytest.mark.e2e

SENDERS_PER_CHANNEL = 8
MESSAGES_PER_SENDER = 25  # 200 a channel
SNIPPETS = [
    "'; DROP TABLE contacts; --",
    "1 OR 1=1",
    "<script>alert('x')</script>",
    "<b>bold</b>",
    "**where** is _my_ `order`",
    "%s %d {0} ${HOME} {{name}}",
    '{"sender": "x", "message": 1}',
    "<@U123ABC> <#C42|general> <https://evil.example|click> &amp; &lt;tag&gt;",
    "order 10001 заказ 注文 طلب הזמנה",
    "where is my order 10001?",
    "I want to return something",
    "\x00\x01 nul and bell \x07",
    "\ud800 lone surrogate",
    "ｆｕｌｌｗｉｄｔｈ ｔｅｘｔ",
    "e\u0301\u0301\u0301 stacked accents",
    "🧦🧦🧦 👨\u200d👩\u200d👧",
    "?!?!",
    "   ",
    "",
    "alice@example.com",
    "+44 7700 900123",
    "\u202eRTL override text",
    "ok",
    "thanks, bye",
]
ALPHABETS = [
    (0x20, 0x7E),
    (0xA0, 0x24F),
    (0x370, 0x3FF),
    (0x400, 0x4FF),
    (0x590, 0x6FF),
    (0x900, 0x97F),
    (0x3040, 0x30FF),
    (0x4E00, 0x4FFF),
    (0x1F300, 0x1F64F),
    (0x200B, 0x200F),
    (0x0300, 0x036F),
    (0x0000, 0x001F),
]


def random_unicode(rng: random.Random, length: int) -> str:
    chars = []
    for _ in range(length):
        low, high = rng.choice(ALPHABETS)
        chars.append(chr(rng.randint(low, high)))
    return "".join(chars)


def generated_messages(seed: int, count: int) -> list[str]:
    """Deterministic mix of the kinds above (no leading "/": that is a shortcut)."""
    rng = random.Random(seed)
    messages = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.35:
            text = rng.choice(SNIPPETS)
        elif kind < 0.75:
            text = random_unicode(rng, rng.randint(1, 80))
        elif kind < 0.85:
            text = random_unicode(rng, rng.randint(4100, 9000))
        elif kind < 0.92:
            text = rng.choice(SNIPPETS) + " " + random_unicode(rng, rng.randint(1, 20))
        else:
            text = rng.choice(["", " ", "\u200b", "\u00a0\u00a0", "...", "🙂"])
        messages.append(text.lstrip("/"))
    return messages


def expected_line(text: str) -> str:
    return screen(text).transcript_text


def log_size(log_dir: Path) -> dict[Path, int]:
    return {path: path.stat().st_size for path in log_dir.glob("*.log")}


def new_log_text(log_dir: Path, before: dict[Path, int]) -> str:
    texts = []
    for path in log_dir.glob("*.log"):
        with path.open("rb") as handle:
            handle.seek(before.get(path, 0))
            texts.append(handle.read().decode(errors="replace"))
    return "\n".join(texts)


def run_channel(
    servers: BotServers, send: Callable[[str, str], None], sender_of: Callable[[str], str]
) -> list[tuple[str, list[str]]]:
    """Each sender sends its messages in order (senders in parallel); returns
    (conversation id, messages) per sender."""
    conversations = [
        (uuid.uuid4().hex[:10], generated_messages(seed, MESSAGES_PER_SENDER))
        for seed in range(SENDERS_PER_CHANNEL)
    ]

    def talk(conversation: tuple[str, list[str]]) -> None:
        key, messages = conversation
        for text in messages:
            servers.said.add(text)
            send(key, text)

    before = log_size(servers.log_dir)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(talk, conversations))
    logs = new_log_text(servers.log_dir, before)
    assert "Traceback" not in logs, logs[logs.find("Traceback") - 500 :][:3000]
    return [(sender_of(key), messages) for key, messages in conversations]


def assert_transcripts(
    servers: BotServers, conversations: list[tuple[str, list[str]]], decode=lambda t: t
) -> None:
    for sender, messages in conversations:
        lines = [text for text, _, _ in transcript(servers, sender, len(messages))]
        assert lines == [expected_line(decode(text)) for text in messages], sender


def test_rest_and_web_chat(bot_servers: BotServers) -> None:
    for path in ("/webhooks/rest/webhook", "/chat/webhook"):

        def send(key: str, text: str, path: str = path) -> None:
            response = requests.post(
                f"{bot_servers.rasa_url}{path}",
                json={"sender": f"fuzz-{key}", "message": text},
                timeout=60,
            )
            assert response.status_code == 200, (text[:80], response.text)
            assert response.json(), f"no reply to {text[:80]!r}"

        conversations = run_channel(bot_servers, send, lambda key: f"fuzz-{key}")
        assert_transcripts(bot_servers, conversations)


def test_telegram(bot_servers: BotServers, fake_telegram: FakeTelegramApi) -> None:
    chats: dict[str, int] = {}

    def send(key: str, text: str) -> None:
        chat = chats.setdefault(key, random.randint(10**9, 10**10))
        before = len(fake_telegram.sent_to(chat))
        if not text:
            text = "\u200b"  # Telegram never delivers an empty message
        response = post(bot_servers, message_update(chat, text))
        assert response.json() == {"status": "processed"}, text[:80]
        assert len(fake_telegram.sent_to(chat, before + 1)) > before

    conversations = run_channel(bot_servers, send, lambda key: str(chats[key]))
    fixed = [(s, [t or "\u200b" for t in messages]) for s, messages in conversations]
    assert_transcripts(bot_servers, fixed)


def test_slack(bot_servers: BotServers, fake_slack: FakeSlackApi) -> None:
    users: dict[str, str] = {}

    def send(key: str, text: str) -> None:
        user = users.setdefault(key, f"UFUZZ{key.upper()}")
        before = len(posts_to(fake_slack, f"D{user}"))
        assert signed_post(bot_servers, dm(user, text)).status_code == 200
        assert len(posts_to(fake_slack, f"D{user}", before + 1)) > before, text[:80]

    conversations = run_channel(bot_servers, send, lambda key: f"{TEAM_ID}.{users[key]}")
    assert_transcripts(bot_servers, conversations, decode=plain_text)
