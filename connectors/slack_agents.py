"""The agents' side of Slack: Claim and Hand back buttons, ``/handback``, ``/takeover``,
thread replies.

Registered on the same bolt app as the customer channel (``connectors.slack``), so every
click and message is verified the same way (forged or stale: 401). The work is done by
``HandoffService``, which the HTTP agent API uses too: the CRM decides which of two
simultaneous clicks wins; the loser is told privately who was first.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.agent_console import (
    CLAIM_ACTION,
    HANDBACK_ACTION_PREFIX,
    AgentConsoleError,
    without_buttons,
)
from connectors.dedupe import Deduplicator
from connectors.handoff_service import HandoffService
from connectors.slack_markup import plain_text
from crm_bridge.errors import HandoffConflict, HandoffNotFound, InvalidInput, RapportError
from crm_bridge.handoff import HandbackOutcome

logger = logging.getLogger(__name__)

HANDBACK_ACTION = re.compile(rf"^{HANDBACK_ACTION_PREFIX}(resolved|needs_follow_up)$")
HANDOFF_NUMBER = re.compile(r"#?(\d+)")
USAGE = "Usage: /handback [#id] [resolved | follow-up]"


def agent_of(body: dict[str, Any]) -> tuple[str, str]:
    """The clicking agent's Slack user id and a name to show the customer."""
    user = body.get("user") or {}
    agent_id = str(user.get("id") or "")
    return agent_id, str(user.get("name") or user.get("username") or agent_id)


def parse_handback(text: str) -> tuple[int | None, HandbackOutcome]:
    """``/handback`` arguments: an optional handoff number and an outcome (resolved)."""
    number = HANDOFF_NUMBER.search(text)
    outcome = HandbackOutcome.RESOLVED
    if "follow" in text.lower():
        outcome = HandbackOutcome.NEEDS_FOLLOW_UP
    return (int(number.group(1)) if number else None), outcome


def register_agent_console(
    app: AsyncApp, service: HandoffService, dedupe: Deduplicator
) -> Callable[[dict[str, Any], dict[str, Any]], Awaitable[None]]:
    """Add the agents' listeners to ``app``; returns the handler for thread messages."""

    async def quietly(call: Callable[..., Any], *args: Any) -> None:
        # The conversation's state is already decided; a Slack hiccup only costs a note.
        try:
            await asyncio.to_thread(call, *args)
        except AgentConsoleError as error:
            logger.warning("Agents' channel not updated: %s", error)

    async def tell(user: str, text: str, thread: str | None = None) -> None:
        console = service.console
        if console is not None and user:
            await quietly(console.tell_agent, user, text, thread)

    async def restamp(body: dict[str, Any], note: str) -> None:
        """Replace the clicked message's buttons by a status line."""
        message, console = body.get("message") or {}, service.console
        if console is not None and message.get("ts") and message.get("blocks"):
            blocks = without_buttons(message["blocks"], note)
            await quietly(console.update, message["ts"], message.get("text") or note, blocks)

    async def who_has(value: str) -> str:
        try:
            holder = (await service.get(int(value))).agent_name
        except (RapportError, ValueError):
            holder = None
        if holder:
            return f"{holder} claimed this conversation first."
        return "This conversation is not waiting for an agent any more."

    @app.action(CLAIM_ACTION)
    async def claim(ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        agent_id, name = agent_of(body)
        try:
            handoff_id = int(action.get("value") or 0)
            handoff = await service.claim(handoff_id, agent_id, name)
        except (HandoffConflict, HandoffNotFound, InvalidInput, ValueError):
            await tell(agent_id, await who_has(str(action.get("value"))))
            return
        except RapportError as error:
            logger.warning("Claim failed: %s", type(error).__name__)
            await tell(agent_id, "The CRM is unavailable; please try again in a moment.")
            return
        await restamp(body, f"Claimed by <@{agent_id}> ({handoff.agent_name})")

    @app.action(HANDBACK_ACTION)
    async def hand_back(ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        agent_id, _ = agent_of(body)
        outcome = HandbackOutcome(str(action.get("action_id")).removeprefix(HANDBACK_ACTION_PREFIX))
        try:
            await service.hand_back(int(action.get("value") or 0), agent_id, outcome)
        except (HandoffConflict, HandoffNotFound, ValueError) as error:
            await tell(agent_id, str(error) or "That conversation cannot be handed back.")
            return
        except RapportError:
            await tell(agent_id, "The CRM is unavailable; please try again in a moment.")
            return
        await restamp(body, f"Handed back by <@{agent_id}> ({outcome.value.replace('_', ' ')})")

    @app.command("/handback")
    async def handback_command(ack: Any, command: dict[str, Any]) -> None:
        agent_id = str(command.get("user_id") or "")
        number, outcome = parse_handback(str(command.get("text") or ""))
        try:
            if number is None:
                held = await service.held_by(agent_id)
                if len(held) != 1:
                    await ack(f"You hold {len(held)} conversations: name one. {USAGE}")
                    return
                number = held[0].id
            await service.hand_back(number, agent_id, outcome)
        except (HandoffConflict, HandoffNotFound) as error:
            await ack(f"{error} {USAGE}")
            return
        except RapportError:
            await ack("The CRM is unavailable; please try again in a moment.")
            return
        await ack(f"Handoff #{number} is back with the bot ({outcome.value.replace('_', ' ')}).")

    @app.command("/takeover")
    async def takeover_command(ack: Any, command: dict[str, Any]) -> None:
        agent_id = str(command.get("user_id") or "")
        number = HANDOFF_NUMBER.search(str(command.get("text") or ""))
        if number is None:
            await ack(
                "Usage: /takeover <interaction id> (see `python -m crm_bridge list-interactions`)"
            )
            return
        name = str(command.get("user_name") or agent_id)
        try:
            handoff = await service.take_over(int(number.group(1)), agent_id, name)
        except (HandoffConflict, HandoffNotFound, InvalidInput) as error:
            await ack(str(getattr(error, "message", "") or error))
            return
        except RapportError:
            await ack("The CRM is unavailable; please try again in a moment.")
            return
        await ack(f"You have conversation #{handoff.id} now; its thread is in the agents' channel.")

    async def thread_message(event: dict[str, Any], body: dict[str, Any]) -> None:
        """An agent wrote in a handoff's thread: it goes to the customer."""
        thread, user = event.get("thread_ts"), event.get("user")
        if not thread or not user or event.get("bot_id") or event.get("subtype"):
            return
        if not await dedupe.first_time(str(body.get("event_id") or event.get("ts"))):
            return
        try:
            handoff = await service.by_console_thread(str(event.get("channel")), str(thread))
            if handoff is None or handoff.state == "closed":
                return
            text = plain_text(str(event.get("text") or "")).strip()
            await service.reply(handoff.id, str(user), text)
        except HandoffConflict:
            await tell(
                str(user), "Claim this conversation before you write to the customer.", str(thread)
            )
        except InvalidInput:
            return
        except RapportError:
            await tell(str(user), "The CRM is unavailable: your message was NOT sent.", str(thread))

    return thread_message
