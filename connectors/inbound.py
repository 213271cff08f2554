"""The one inbound step every customer channel goes through before Rasa.

REST, the web chat, Telegram, Slack and any channel added later subclass
:class:`ScreenedInputChannel`, whose ``blueprint`` hands the channel's routes a
``on_new_message`` that screens each message first:

- **normalise**: NFC, invisible characters out, whitespace collapsed (``connectors.normalise``);
  channel markup is decoded by the channel's adapter before this (Slack);
- **limit**: a message longer than ``MAX_MESSAGE_CHARS`` (default 4096, Telegram's own
  limit) never reaches NLU; the customer is asked for a shorter one;
- **meaningless**: empty, whitespace, punctuation or emoji only -> a clarifying question
  (a lone 👍 counts as "yes");
- **language**: clearly not English -> an answer in that language (``connectors.language``).

Refused or unclear messages reach Rasa as an intent shortcut (``/inbound_too_long``,
``/inbound_unclear``, ``/inbound_other_language``), so NLU never runs on them, the
dialogue still answers (also inside a form) and the turn is in the transcript. Every
message carries ``metadata["inbound"]``: the text for the transcript (truncated and
marked when too long), the verdict, the language and the limit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from rasa.core.channels.channel import InputChannel, UserMessage
from sanic import Blueprint

from connectors.language import ENGLISH, detect_language
from connectors.normalise import has_words, is_affirming_emoji, normalise
from crm_bridge.errors import MessageNotTaken, RapportError
from crm_bridge.interaction_log import INBOUND_METADATA_KEY

logger = logging.getLogger(__name__)

DEFAULT_MAX_CHARS = 4096
# Beyond this many times the limit only the start is looked at: a megabyte of text costs
# nothing more than a message just over the limit.
EXAMINED_MULTIPLE = 4
TOO_LONG = "too_long"
UNCLEAR = "unclear"
OTHER_LANGUAGE = "other_language"
ACCEPTED = "ok"
SHORTCUTS = {
    TOO_LONG: "/inbound_too_long",
    UNCLEAR: "/inbound_unclear",
    OTHER_LANGUAGE: "/inbound_other_language",
}
AFFIRM_SHORTCUT = "/affirm"

OnNewMessage = Callable[[UserMessage], Awaitable[Any]]


@dataclass(frozen=True)
class Screened:
    """What Rasa receives for one customer message."""

    text: str
    verdict: str
    transcript_text: str
    language: str = ENGLISH
    details: dict[str, Any] = field(default_factory=dict)

    def metadata(self, max_chars: int) -> dict[str, Any]:
        """The ``inbound`` metadata entry (read by the interaction log and the actions)."""
        return {
            "text": self.transcript_text,
            "verdict": self.verdict,
            "language": self.language,
            "max_chars": max_chars,
            **self.details,
        }


def truncated_for_transcript(text: str, max_chars: int, length: int) -> str:
    """The first ``max_chars`` characters, marked as cut."""
    return f"{text[:max_chars]} […truncated: the message had {length} characters]"


def screen(raw: str, max_chars: int = DEFAULT_MAX_CHARS) -> Screened:
    """Decide what Rasa gets for the customer's ``raw`` text (pure; no I/O)."""
    examined = raw[: max_chars * EXAMINED_MULTIPLE]
    text = normalise(examined)
    if len(text) > max_chars or len(raw) > len(examined):
        length = len(raw) if len(raw) > len(examined) else len(text)
        return Screened(
            SHORTCUTS[TOO_LONG],
            TOO_LONG,
            truncated_for_transcript(text, max_chars, length),
            details={"length": length},
        )
    if not has_words(text):
        if is_affirming_emoji(text):
            return Screened(AFFIRM_SHORTCUT, ACCEPTED, text)
        return Screened(SHORTCUTS[UNCLEAR], UNCLEAR, text)
    if text.startswith("/"):
        # A button's payload (or a typed shortcut): the dialogue's own language.
        return Screened(text, ACCEPTED, text)
    language = detect_language(text)
    if language != ENGLISH:
        return Screened(SHORTCUTS[OTHER_LANGUAGE], OTHER_LANGUAGE, text, language)
    return Screened(text, ACCEPTED, text)


def screened(on_new_message: OnNewMessage, max_chars: int) -> OnNewMessage:
    """``on_new_message`` with every message screened first; a turn that fails (the
    conversation's lock or tracker store is down) raises :class:`MessageNotTaken`."""

    async def handle(message: UserMessage) -> Any:
        # Off the event loop: normalising and language detection are CPU work.
        result = await asyncio.to_thread(screen, message.text or "", max_chars)
        message.text = result.text
        message.metadata = {
            **(message.metadata or {}),
            INBOUND_METADATA_KEY: result.metadata(max_chars),
        }
        try:
            return await on_new_message(message)
        except RapportError:
            raise
        except Exception as error:
            # Rasa handles an action's failure itself; what arrives here is the turn
            # itself failing (lock, tracker store): the channel asks for the message again
            # rather than pretend it was answered. Type only: the text may be the customer's.
            logger.error(
                "A %s message was not taken: %s", message.input_channel, type(error).__name__
            )
            raise MessageNotTaken("The conversation could not be loaded or saved.") from error

    return handle


def warm_up() -> None:
    """Load the language models now rather than on a customer's first message."""
    detect_language("this loads the language models once")


class ScreenedInputChannel(InputChannel):
    """Base of every customer channel: its routes only ever see screened messages.

    Subclasses implement :meth:`routes` instead of ``blueprint``.
    """

    max_message_chars: int = DEFAULT_MAX_CHARS

    def blueprint(self, on_new_message: OnNewMessage) -> Blueprint:
        """The channel's routes, given the screening ``on_new_message``."""
        blueprint = self.routes(screened(on_new_message, self.max_message_chars))

        @blueprint.listener("after_server_start")
        async def load_language_models(app: Any, loop: Any) -> None:
            await asyncio.to_thread(warm_up)

        return blueprint

    def routes(self, on_new_message: OnNewMessage) -> Blueprint:
        """The channel's Sanic routes; ``on_new_message`` screens before Rasa."""
        raise NotImplementedError
