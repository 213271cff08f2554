"""What an agent does to a conversation, whichever console they use: the one home of
the handoff's use cases once a handoff is queued (its state lives in the CRM,
``crm_bridge.handoff``; the assistant queues it, ``actions.handoff``).

The HTTP agent API (``connectors.agent_api``), the agents' Slack channel
(``connectors.slack_agents``), the terminal (``python -m bot handoffs``, through the
agent API) and the timeout sweeper all call this service, so a claim, a reply, a
hand-back or a timeout has the same effect everywhere: the CRM's HandoffDesk decides (one claim
wins), the customer hears about it on their own channel, and the handoff's Slack
thread (when there is one) shows what happened, even when it was done elsewhere.
The CRM's calls are blocking SQL: they run in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from bot.agent_console import AgentConsoleError, SlackAgentConsole
from bot.csat import CSAT_BUTTONS
from crm_bridge import settings as crm_settings
from crm_bridge.errors import RapportError
from crm_bridge.handoff import HandbackOutcome, HandoffDesk, HandoffView

logger = logging.getLogger(__name__)

JOINED = "{name} from our support team has joined the conversation."
NOBODY_FREE = (
    "Sorry, no one from the team could take your conversation just now. Your request is "
    "kept as a ticket and we'll get back to you within one working day. I'm here meanwhile."
)
HANDED_BACK = (
    "Thanks for your patience! You're back with the shop's assistant now. "
    "How would you rate the help you got, from 1 (poor) to 5 (excellent)?"
)


async def push_to_customer(
    app: Any, handoff: HandoffView, text: str, buttons: list[dict[str, str]] | None = None
) -> bool:
    """Send ``text`` (and buttons) to the customer on their channel; False if it cannot."""
    for channel in getattr(app.ctx, "input_channels", []):
        if channel.name() == handoff.channel and hasattr(channel, "push"):
            try:
                await channel.push(handoff.sender_id, text, buttons)
            except Exception as error:
                # The claim, reply or hand-back already stands in the CRM; "not delivered"
                # is the truth, a 500 would not be. (Type only: messages may hold secrets.)
                logger.warning(
                    "Could not push to a %s customer (%s)", handoff.channel, type(error).__name__
                )
                return False
            return True
    return False


class HandoffService:
    """Claims, replies, hand-backs and timeouts, with their side effects."""

    def __init__(self, app_of: Callable[[], Any]) -> None:
        self._app_of = app_of
        self._desk: HandoffDesk | None = None
        self._console: SlackAgentConsole | None | bool = False

    @property
    def desk(self) -> HandoffDesk:
        if self._desk is None:
            self._desk = HandoffDesk(crm_settings.database_url())
        return self._desk

    @property
    def console(self) -> SlackAgentConsole | None:
        if self._console is False:
            self._console = SlackAgentConsole.from_environment()
        return self._console if isinstance(self._console, SlackAgentConsole) else None

    async def push(
        self, handoff: HandoffView, text: str, buttons: list[dict[str, str]] | None = None
    ) -> bool:
        """Send the customer a message on their channel."""
        return await push_to_customer(self._app_of(), handoff, text, buttons)

    async def note_in_thread(
        self, handoff: HandoffView, text: str, blocks: list[dict[str, Any]] | None = None
    ) -> None:
        """Tell the handoff's Slack thread (if any); a Slack failure is only logged."""
        console = self.console
        if console is None or not handoff.console_thread:
            return
        try:
            await asyncio.to_thread(
                console.post_in_thread,
                handoff.console_thread,
                text,
                blocks,
                handoff.console_channel,
            )
        except AgentConsoleError as error:
            logger.warning("Could not update the agents' thread: %s", error)

    async def live_handoffs(self) -> list[HandoffView]:
        """Conversations waiting for or held by an agent."""
        return await asyncio.to_thread(self.desk.list)

    async def get(self, handoff_id: int) -> HandoffView:
        """One handoff (``HandoffNotFound`` when there is none)."""
        return await asyncio.to_thread(self.desk.get, handoff_id)

    async def held_by(self, agent_id: str) -> list[HandoffView]:
        """The conversations this agent holds."""
        return await asyncio.to_thread(self.desk.held_by, agent_id)

    async def by_console_thread(self, channel: str, thread: str) -> HandoffView | None:
        """The handoff discussed in this Slack thread, if any."""
        return await asyncio.to_thread(self.desk.by_console_thread, channel, thread)

    async def claim(self, handoff_id: int, agent_id: str, agent_name: str) -> HandoffView:
        """Give the conversation to this agent (HandoffConflict if someone was first)."""
        from bot.agent_console import handback_blocks

        handoff = await asyncio.to_thread(self.desk.claim, handoff_id, agent_id, agent_name)
        await self.push(handoff, JOINED.format(name=handoff.agent_name))
        await self.note_in_thread(
            handoff,
            f"{handoff.agent_name} has the conversation.",
            handback_blocks(handoff.id, handoff.agent_name or agent_id),
        )
        return handoff

    async def take_over(self, interaction_id: int, agent_id: str, agent_name: str) -> HandoffView:
        """An agent takes a live conversation on their own initiative; the agents' channel
        gets its summary and a thread, as for any handoff."""
        handoff = await asyncio.to_thread(self.desk.take_over, interaction_id, agent_id, agent_name)
        await self.push(handoff, JOINED.format(name=handoff.agent_name))
        if self.console is not None and not handoff.console_thread:
            try:
                handoff = await asyncio.to_thread(self._announce_taken, handoff)
            except RapportError as error:
                logger.warning("Could not open a thread for handoff #%s: %s", handoff.id, error)
        return handoff

    def _announce_taken(self, handoff: HandoffView) -> HandoffView:
        from bot.agent_console import (
            HandoffSummary,
            handback_blocks,
            summary_blocks,
            without_buttons,
        )

        console = self.console
        assert console is not None
        context = self.desk.context(handoff.id)
        summary = HandoffSummary(
            handoff_id=handoff.id,
            reason=handoff.reason,
            channel=handoff.channel,
            contact=context.contact,
            intents=context.intents,
            references=context.references,
            recent=context.recent,
        )
        name = handoff.agent_name or handoff.agent_id or "An agent"
        thread = console.announce(summary)
        console.update(
            thread,
            f"Handoff #{handoff.id}",
            without_buttons(summary_blocks(summary), f"Taken over by {name}"),
        )
        console.post_in_thread(
            thread, f"{name} has the conversation.", handback_blocks(handoff.id, name)
        )
        return self.desk.attach_console_thread(handoff.id, console.channel, thread)

    async def reply(self, handoff_id: int, agent_id: str, text: str) -> tuple[HandoffView, bool]:
        """The holding agent writes to the customer: transcript first, then delivery."""
        handoff = await asyncio.to_thread(self.desk.record_agent_reply, handoff_id, agent_id, text)
        delivered = await self.push(handoff, text.strip())
        if not delivered:
            await self.note_in_thread(
                handoff,
                f"Not delivered: the customer's channel ({handoff.channel}) cannot "
                "receive messages outside a turn. The reply is in the transcript.",
            )
        return handoff, delivered

    async def hand_back(
        self, handoff_id: int, agent_id: str, outcome: HandbackOutcome
    ) -> HandoffView:
        """The holding agent returns the conversation; the bot asks for a rating."""
        handoff = await asyncio.to_thread(self.desk.hand_back, handoff_id, agent_id, outcome)
        await self.push(handoff, HANDED_BACK, CSAT_BUTTONS)
        label = outcome.value.replace("_", " ")
        await self.note_in_thread(
            handoff, f"{handoff.agent_name} handed the conversation back to the bot ({label})."
        )
        return handoff

    async def sweep(self, timeout: timedelta, interval: float) -> None:
        """Time out unclaimed handoffs every ``interval`` seconds, forever (a task)."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.expire_unclaimed(timeout)
            except RapportError as error:
                logger.warning("Handoff timeout sweep failed (%s)", type(error).__name__)

    async def expire_unclaimed(self, timeout: timedelta) -> list[HandoffView]:
        """Time out handoffs nobody claimed and tell their customers; the bot answers again."""
        expired = await asyncio.to_thread(self.desk.expire_unclaimed, timeout)
        for handoff in expired:
            try:
                await self.push(handoff, NOBODY_FREE)
                await self.note_in_thread(
                    handoff,
                    "Nobody claimed this in time: the customer was told their request "
                    "is kept as a ticket, and the bot answers again.",
                )
            except RapportError:
                logger.exception("Could not tell a customer that no agent was free")
        return expired
