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
from bot.handoff_service import HandoffService
from connectors.dedupe import Deduplicator
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


class AgentSlackListeners:
    """The agents' listeners on the Slack app, one method each; the work is the
    service's, these only read Slack's payloads and answer the agent."""

    def __init__(self, service: HandoffService, dedupe: Deduplicator) -> None:
        self.service = service
        self.dedupe = dedupe
        # One lock per handoff thread: an agent's messages reach the customer in the order
        # they were written, though each is handled in its own task (asyncio locks are FIFO).
        self._threads: dict[str, tuple[asyncio.Lock, int]] = {}

    def register(self, app: AsyncApp) -> None:
        """Add the buttons' and commands' listeners to ``app`` (thread messages come
        through the customer channel's message listener: ``thread_message``)."""
        app.action(CLAIM_ACTION)(self.claim)
        app.action(HANDBACK_ACTION)(self.hand_back)
        app.command("/handback")(self.handback_command)
        app.command("/takeover")(self.takeover_command)

    async def quietly(self, call: Callable[..., Any], *args: Any) -> None:
        """Run a Slack call in a thread; a failure is only logged (the conversation's
        state is already decided, a Slack hiccup only costs a note)."""
        try:
            await asyncio.to_thread(call, *args)
        except AgentConsoleError as error:
            logger.warning("Agents' channel not updated: %s", error)

    async def tell(self, user: str, text: str, thread: str | None = None) -> None:
        """A message only this agent sees."""
        console = self.service.console
        if console is not None and user:
            await self.quietly(console.tell_agent, user, text, thread)

    async def restamp(self, body: dict[str, Any], note: str) -> None:
        """Replace the clicked message's buttons by a status line."""
        message, console = body.get("message") or {}, self.service.console
        if console is not None and message.get("ts") and message.get("blocks"):
            blocks = without_buttons(message["blocks"], note)
            await self.quietly(console.update, message["ts"], message.get("text") or note, blocks)

    async def who_has(self, value: str) -> str:
        """Who was first, for an agent whose claim lost."""
        try:
            holder = (await self.service.get(int(value))).agent_name
        except (RapportError, ValueError):
            holder = None
        if holder:
            return f"{holder} claimed this conversation first."
        return "This conversation is not waiting for an agent any more."

    async def claim(self, ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        """The Claim button of a handoff's summary."""
        await ack()
        agent_id, name = agent_of(body)
        try:
            handoff_id = int(action.get("value") or 0)
            handoff = await self.service.claim(handoff_id, agent_id, name)
        except (HandoffConflict, HandoffNotFound, InvalidInput, ValueError):
            await self.tell(agent_id, await self.who_has(str(action.get("value"))))
            return
        except RapportError as error:
            logger.warning("Claim failed: %s", type(error).__name__)
            await self.tell(agent_id, "The CRM is unavailable; please try again in a moment.")
            return
        await self.restamp(body, f"Claimed by <@{agent_id}> ({handoff.agent_name})")

    async def hand_back(self, ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        """A Hand back button (resolved or needs follow-up) in a handoff's thread."""
        await ack()
        agent_id, _ = agent_of(body)
        outcome = HandbackOutcome(str(action.get("action_id")).removeprefix(HANDBACK_ACTION_PREFIX))
        try:
            await self.service.hand_back(int(action.get("value") or 0), agent_id, outcome)
        except (HandoffConflict, HandoffNotFound, ValueError) as error:
            await self.tell(agent_id, str(error) or "That conversation cannot be handed back.")
            return
        except RapportError:
            await self.tell(agent_id, "The CRM is unavailable; please try again in a moment.")
            return
        await self.restamp(
            body, f"Handed back by <@{agent_id}> ({outcome.value.replace('_', ' ')})"
        )

    async def handback_command(self, ack: Any, command: dict[str, Any]) -> None:
        """``/handback [#id] [resolved | follow-up]``."""
        agent_id = str(command.get("user_id") or "")
        number, outcome = parse_handback(str(command.get("text") or ""))
        try:
            if number is None:
                held = await self.service.held_by(agent_id)
                if len(held) != 1:
                    await ack(f"You hold {len(held)} conversations: name one. {USAGE}")
                    return
                number = held[0].id
            await self.service.hand_back(number, agent_id, outcome)
        except (HandoffConflict, HandoffNotFound) as error:
            await ack(f"{error} {USAGE}")
            return
        except RapportError:
            await ack("The CRM is unavailable; please try again in a moment.")
            return
        await ack(f"Handoff #{number} is back with the bot ({outcome.value.replace('_', ' ')}).")

    async def takeover_command(self, ack: Any, command: dict[str, Any]) -> None:
        """``/takeover <interaction id>``: take a live conversation over."""
        agent_id = str(command.get("user_id") or "")
        number = HANDOFF_NUMBER.search(str(command.get("text") or ""))
        if number is None:
            await ack(
                "Usage: /takeover <interaction id> (see `python -m crm_bridge list-interactions`)"
            )
            return
        name = str(command.get("user_name") or agent_id)
        try:
            handoff = await self.service.take_over(int(number.group(1)), agent_id, name)
        except (HandoffConflict, HandoffNotFound, InvalidInput) as error:
            await ack(str(getattr(error, "message", "") or error))
            return
        except RapportError:
            await ack("The CRM is unavailable; please try again in a moment.")
            return
        await ack(f"You have conversation #{handoff.id} now; its thread is in the agents' channel.")

    async def thread_message(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        """An agent wrote in a handoff's thread: it goes to the customer, in order."""
        thread, user = event.get("thread_ts"), event.get("user")
        if not thread or not user or event.get("bot_id") or event.get("subtype"):
            return
        key = str(thread)
        lock, waiting = self._threads.get(key, (asyncio.Lock(), 0))
        self._threads[key] = (lock, waiting + 1)
        try:
            async with lock:
                await self._relay_to_customer(event, body, key, str(user))
        finally:
            lock, waiting = self._threads[key]
            if waiting == 1:
                del self._threads[key]  # nobody else waits: forget the thread's lock
            else:
                self._threads[key] = (lock, waiting - 1)

    async def _relay_to_customer(
        self, event: dict[str, Any], body: dict[str, Any], thread: str, user: str
    ) -> None:
        if not await self.dedupe.first_time(str(body.get("event_id") or event.get("ts"))):
            return
        try:
            handoff = await self.service.by_console_thread(str(event.get("channel")), thread)
            if handoff is None or handoff.state == "closed":
                return
            text = plain_text(str(event.get("text") or "")).strip()
            await self.service.reply(handoff.id, user, text)
        except HandoffConflict:
            await self.tell(
                user, "Claim this conversation before you write to the customer.", thread
            )
        except InvalidInput:
            return
        except RapportError:
            await self.tell(user, "The CRM is unavailable: your message was NOT sent.", thread)


def register_agent_console(
    app: AsyncApp, service: HandoffService, dedupe: Deduplicator
) -> Callable[[dict[str, Any], dict[str, Any]], Awaitable[None]]:
    """Add the agents' listeners to ``app``; returns the handler for thread messages."""
    listeners = AgentSlackListeners(service, dedupe)
    listeners.register(app)
    return listeners.thread_message
