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
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from bot import settings as bot_settings
from bot.agent_console import AgentConsoleError, HandoffSummary, SlackAgentConsole
from bot.business_hours import BusinessHours
from bot.csat import CSAT_BUTTONS
from crm_bridge import settings as crm_settings
from crm_bridge.errors import CrmUnavailable, RapportError
from crm_bridge.gateway import ContactView, ConversationRef, CrmGateway, TicketCategory
from crm_bridge.handoff import HandbackOutcome, HandoffDesk, HandoffReason, HandoffView

logger = logging.getLogger(__name__)

SUBJECTS = {
    HandoffReason.CUSTOMER_REQUEST: "Customer asked to talk to a person",
    HandoffReason.REPEATED_FALLBACK: "The assistant did not understand the customer",
    HandoffReason.ACTION_FAILED: "The assistant could not complete a request",
}
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


@dataclass(frozen=True)
class HandoffAsk:
    """What the conversation tells about a request for a person (built by the action)."""

    conversation: ConversationRef
    reason: HandoffReason
    contact: ContactView | None = None
    recent: list[tuple[str, str]] = field(default_factory=list)  # (who, text), oldest first
    intents: list[str] = field(default_factory=list)
    orders: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class HandoffAnswer:
    """What became of a request: ``already`` with the team, ``offline`` (a ticket for the
    next opening) or ``queued``; the action words it for the customer."""

    state: str
    ticket_reference: str | None = None
    position: int = 0
    typical_wait: timedelta | None = None
    next_opening: datetime | None = None


class HandoffService:
    """Requests, claims, replies, hand-backs and timeouts, with their side effects."""

    def __init__(
        self,
        app_of: Callable[[], Any] = lambda: None,
        desk: HandoffDesk | None = None,
        gateway: CrmGateway | None = None,
        console: SlackAgentConsole | None | bool = False,
        hours: BusinessHours | None = None,
    ) -> None:
        """``app_of`` gives the Rasa app whose channels reach customers (the action server
        has none: it answers within the turn); the rest default to the configured ones."""
        self._app_of = app_of
        self._desk = desk
        self._gateway = gateway
        self._console = console
        self._hours = hours

    @property
    def desk(self) -> HandoffDesk:
        if self._desk is None:
            self._desk = HandoffDesk(crm_settings.database_url())
        return self._desk

    @property
    def gateway(self) -> CrmGateway:
        if self._gateway is None:
            from crm_bridge.sql_gateway import SqlCrmGateway

            self._gateway = SqlCrmGateway.from_url(crm_settings.database_url())
        return self._gateway

    @property
    def console(self) -> SlackAgentConsole | None:
        if self._console is False:
            self._console = SlackAgentConsole.from_environment()
        return self._console if isinstance(self._console, SlackAgentConsole) else None

    @property
    def hours(self) -> BusinessHours:
        if self._hours is None:
            settings = bot_settings.current()
            self._hours = BusinessHours.parse(settings.business_hours, settings.business_timezone)
        return self._hours

    def request(self, ask: HandoffAsk) -> HandoffAnswer:
        """Queue the conversation for a person with a ticket, and tell the agents' channel;
        outside business hours, a ticket for the next opening instead. Raises RapportError
        when the CRM cannot record it (blocking: called from the action server)."""
        live = self.desk.ownership(ask.conversation.sender_id)
        if live.handoff is not None:
            return HandoffAnswer("already", position=self.desk.queue_position(live.handoff.id))
        ticket = None
        try:
            ticket = self.gateway.open_ticket(
                ask.conversation,
                TicketCategory.HUMAN_REQUEST,
                SUBJECTS.get(ask.reason, "Handoff"),
                "\n".join(f"{who}: {text}" for who, text in ask.recent),
                contact_id=ask.contact.id if ask.contact else None,
            )
        except RapportError:
            if ask.reason is not HandoffReason.ACTION_FAILED:
                raise
            # The CRM records failed; the handoff desk may still work. A person can help.
        reference = ticket.reference if ticket else None
        now = datetime.now(timezone.utc)
        if not self.hours.is_open(now):
            if ticket is None:
                # Nothing would be recorded for the team to answer: never promise a reply.
                raise CrmUnavailable("No ticket could be opened outside business hours.")
            return HandoffAnswer("offline", reference, next_opening=self.hours.next_opening(now))
        handoff = self.desk.request(
            ask.conversation, ask.reason, ticket_id=ticket.id if ticket else None
        )
        position = self.desk.queue_position(handoff.id)
        self._announce(ask, handoff.id, reference, position)
        return HandoffAnswer("queued", reference, position, self.desk.typical_wait())

    def relay_customer_message(self, sender_id: str, text: str) -> None:
        """A customer's message while an agent holds the conversation: into the
        handoff's Slack thread (best effort: the transcript has it for every console)."""
        console = self.console
        if console is None or not text:
            return
        try:
            handoff = self.desk.ownership(sender_id).handoff
            if handoff is not None and handoff.console_thread:
                console.relay_customer_message(
                    handoff.console_thread, text, handoff.console_channel
                )
        except RapportError as error:  # AgentConsoleError is one (Unavailable)
            logger.warning("Could not relay a customer message to the agent: %s", error)

    def record_rating(self, sender_id: str, score: int) -> None:
        """The customer's 1-5 rating of the help they got, on their last handed-back
        handoff and its Interaction (RapportError when the CRM cannot store it)."""
        handoff = self.desk.last_handed_back(sender_id)
        if handoff is not None:
            self.desk.record_csat(handoff.id, score)

    def _announce(
        self, ask: HandoffAsk, handoff_id: int, ticket: str | None, position: int
    ) -> None:
        """Post the summary in the agents' channel and remember its thread (best effort:
        the handoff stands and the agent API lists it even when Slack is down)."""
        console = self.console
        if console is None:
            return
        contact = ask.contact
        who = None
        if contact is not None:
            who = f"{contact.name} <{contact.email}>" if contact.email else contact.name
        summary = HandoffSummary(
            handoff_id=handoff_id,
            reason=ask.reason.value,
            channel=ask.conversation.channel,
            contact=who,
            ticket=ticket,
            queue_position=position,
            intents=ask.intents,
            orders=ask.orders,
            references=[r for r in ask.references if r != ticket],
            recent=ask.recent,
        )
        try:
            thread = console.announce(summary)
            self.desk.attach_console_thread(handoff_id, console.channel, thread)
        except RapportError as error:  # AgentConsoleError is one (Unavailable)
            logger.warning("Could not announce handoff #%s to agents: %s", handoff_id, error)

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
