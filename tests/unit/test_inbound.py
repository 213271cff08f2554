"""The inbound step every channel shares: normalising, limits, meaningless input,
language, Slack markup, and that every customer channel goes through it."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from rasa.core.channels.channel import CollectingOutputChannel, UserMessage

from bot.settings import PROJECT_ROOT
from connectors.inbound import ScreenedInputChannel, screen, screened
from connectors.language import detect_language
from connectors.normalise import normalise
from connectors.slack_markup import plain_text


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("  where\u00a0is   my\torder ", "where is my order"),
        ("zero\u200bwidth\u200c\u2060here\ufeff", "zerowidthhere"),
        ("ctrl\x00\x07chars\x1b", "ctrlchars"),
        ("line one\r\n\r\n\r\nline two", "line one\nline two"),
        ("cafe\u0301", "café"),  # decomposed -> NFC
        ("family 👨\u200d👩\u200d👧 and 👍🏽", "family 👨\u200d👩\u200d👧 and 👍🏽"),
        ("lone \ud800 surrogate", "lone surrogate"),
        ("\u200b\u00a0 \u2003\u200d", ""),
    ],
)
def test_normalise(raw: str, clean: str) -> None:
    assert normalise(raw) == clean


@pytest.mark.parametrize(
    ("raw", "plain"),
    [
        ("hi <@U024BE7LH> there", "hi @user there"),
        ("ask <@U024BE7LH|bob>", "ask @bob"),
        ("see <#C024BE7LR|general>", "see #general"),
        ("see <#C024BE7LR>", "see #channel"),
        ("<!here> help", "@here help"),
        ("<!subteam^SAZ94GDB8|@support> ping", "@support ping"),
        ("track <https://dpd.example/t?a=1&amp;b=2|my parcel>", "track my parcel"),
        ("go to <https://shop.example/orders>", "go to https://shop.example/orders"),
        ("mail <mailto:alice@example.com|alice@example.com>", "mail alice@example.com"),
        ("5 &lt; 6 &amp;&amp; 7 &gt; 2", "5 < 6 && 7 > 2"),
        ("literal &amp;lt;", "literal &lt;"),
        ("order 10001 📦", "order 10001 📦"),
    ],
)
def test_slack_markup_becomes_what_the_customer_saw(raw: str, plain: str) -> None:
    assert plain_text(raw) == plain


@pytest.mark.parametrize(
    "raw", ["", "   ", "\u00a0\u200b", "???", "...", "!?!", "😀😀", "🙈 ❤️", "-_-", "\u200d"]
)
def test_meaningless_messages_get_the_clarifying_shortcut(raw: str) -> None:
    result = screen(raw)
    assert (result.text, result.verdict) == ("/inbound_unclear", "unclear")
    assert result.transcript_text == normalise(raw)


@pytest.mark.parametrize("raw", ["👍", "👍🏼", " 👌 ", "✅"])
def test_a_lone_thumbs_up_is_a_yes(raw: str) -> None:
    result = screen(raw)
    assert (result.text, result.verdict, result.transcript_text) == ("/affirm", "ok", raw.strip())


def test_a_message_over_the_limit_never_reaches_nlu_and_is_kept_truncated() -> None:
    result = screen("a" * 5000, max_chars=4096)
    assert (result.text, result.verdict) == ("/inbound_too_long", "too_long")
    assert result.transcript_text.startswith("a" * 4096 + " […truncated")
    assert "5000 characters" in result.transcript_text
    assert result.metadata(4096) == {
        "text": result.transcript_text,
        "verdict": "too_long",
        "language": "en",
        "max_chars": 4096,
        "length": 5000,
    }


def test_a_megabyte_is_refused_without_reading_it_all() -> None:
    result = screen("é" * 1_000_000, max_chars=4096)
    assert result.verdict == "too_long" and result.details["length"] == 1_000_000
    assert len(result.transcript_text) < 4200


def test_the_limit_counts_the_text_after_normalising() -> None:
    # 4,000 visible characters padded with invisible ones are within a 4,096 limit.
    assert screen("ab\u200b" * 2000, max_chars=4096).verdict == "ok"


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("waar is mijn bestelling", "nl"),
        ("wo ist meine Bestellung", "de"),
        ("où est ma commande", "fr"),
        ("dónde está mi pedido", "es"),
        ("ik wil mijn pakket terugsturen alstublieft", "nl"),
    ],
)
def test_clearly_foreign_messages_are_answered_as_such(text: str, language: str) -> None:
    result = screen(text)
    assert (result.text, result.verdict, result.language) == (
        "/inbound_other_language",
        "other_language",
        language,
    )
    assert result.transcript_text == text


@pytest.mark.parametrize("text", ["hallo", "merci", "10002", "gracias amigo", "alice@example.com"])
def test_short_messages_stay_english(text: str) -> None:
    assert screen(text).verdict == "ok"


def _english_examples() -> list[str]:
    examples = []
    for path in sorted((PROJECT_ROOT / "data" / "nlu").glob("*.yml")):
        for item in yaml.safe_load(path.read_text())["nlu"]:
            if "intent" not in item or item["intent"] == "inbound_other_language":
                continue  # regexes, synonyms, and the examples that are meant to be foreign
            for line in item["examples"].splitlines():
                line = line.strip().removeprefix("- ")
                # Annotated entities: [text](entity) or [text]{"entity": ...} -> text.
                examples.append(re.sub(r"\[([^\]]*)\](\([^)]*\)|\{[^}]*\})", r"\1", line))
    return [example for example in examples if example]


def test_no_english_training_example_is_taken_for_another_language() -> None:
    examples = _english_examples()
    assert len(examples) > 300
    flagged = [text for text in examples if detect_language(text) != "en"]
    assert flagged == []


def test_button_payloads_pass_unchanged() -> None:
    payload = '/inform{"delivery_issue":"late"}'
    assert (screen(payload).text, screen(payload).verdict) == (payload, "ok")


def test_screened_hands_rasa_the_shortcut_and_keeps_channel_metadata() -> None:
    received: list[UserMessage] = []

    async def on_new_message(message: UserMessage) -> None:
        received.append(message)

    message = UserMessage(
        "  ??? ",
        CollectingOutputChannel(),
        "s1",
        input_channel="rest",
        metadata={"telegram": {"chat_type": "private"}, "inbound": {"text": "forged"}},
    )
    asyncio.run(screened(on_new_message, 4096)(message))
    [got] = received
    assert got.text == "/inbound_unclear"
    assert got.metadata is not None
    assert got.metadata["telegram"] == {"chat_type": "private"}
    # A caller cannot write the transcript line: the step's entry replaces theirs.
    assert got.metadata["inbound"]["text"] == "???"


def _customer_channels() -> list[type[Any]]:
    import importlib

    channels = []
    for dotted in yaml.safe_load(Path(PROJECT_ROOT / "credentials.yml").read_text()):
        module, _, name = dotted.rpartition(".")
        channels.append(getattr(importlib.import_module(module), name))
    return channels


def test_every_customer_channel_goes_through_the_inbound_step() -> None:
    from connectors.agent_api import AgentApiChannel

    channels = [c for c in _customer_channels() if c is not AgentApiChannel]
    assert len(channels) >= 4
    for channel in channels:
        assert issubclass(channel, ScreenedInputChannel), channel
        # The step lives in ScreenedInputChannel.blueprint: a channel must not replace it.
        assert channel.blueprint is ScreenedInputChannel.blueprint, channel


async def test_a_turn_that_fails_is_not_taken_and_the_log_keeps_no_words(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import redis.exceptions
    from rasa.core.channels.channel import CollectingOutputChannel, UserMessage

    from connectors.inbound import screened
    from crm_bridge.errors import MessageNotTaken

    async def store_down(message: UserMessage) -> None:
        raise redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6390.")

    handle = screened(store_down, 4096)
    message = UserMessage(
        "where is my parcel, it is late", CollectingOutputChannel(), "s", input_channel="rest"
    )
    with pytest.raises(MessageNotTaken) as raised:
        await handle(message)
    assert raised.value.customer_text.endswith("Please send it again.")
    assert "A rest message was not taken: ConnectionError" in caplog.text
    assert "parcel" not in caplog.text
