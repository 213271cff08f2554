"""A small authenticated HTTP API for agent consoles (``/agents/api``).

List queued and held conversations, claim one, reply to the customer on their own
channel, and hand it back. Every request needs ``Authorization: Bearer <AGENT_API_TOKEN>``;
without that setting the API is off. Replies reach customers through the channel they
wrote on (Telegram and Slack can be written to at any time) and are logged in the
transcript with the agent's name.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from rasa.core.channels.channel import InputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.csat import CSAT_BUTTONS
from crm_bridge import settings as crm_settings
from crm_bridge.errors import CrmError, HandoffConflict, InvalidInput
from crm_bridge.handoff import HandbackOutcome, HandoffDesk, HandoffView

logger = logging.getLogger(__name__)

JOINED = "{name} from our support team has joined the conversation."
NOBODY_FREE = (
    "Sorry, no one from the team could take your conversation just now. Your request is "
    "kept as a ticket and we'll get back to you within one working day. I'm here meanwhile."
)
SWEEP_INTERVAL_SECONDS = 30
HANDED_BACK = (
    "Thanks for your patience! You're back with the shop's assistant now. "
    "How would you rate the help you got, from 1 (poor) to 5 (excellent)?"
)


def _json(handoff: HandoffView) -> dict[str, Any]:
    data = asdict(handoff)
    for key, value in data.items():
        if hasattr(value, "isoformat"):
            data[key] = value.isoformat()
    return data


async def push_to_customer(
    app: Any, handoff: HandoffView, text: str, buttons: list[dict[str, str]] | None = None
) -> bool:
    """Send ``text`` (and buttons) to the customer on their channel; False if it cannot."""
    for channel in getattr(app.ctx, "input_channels", []):
        if channel.name() == handoff.channel and hasattr(channel, "push"):
            try:
                await channel.push(handoff.sender_id, text, buttons)
            except Exception as error:
                # The claim, reply or hand-back already stands in the CRM; a 500 would tell
                # the agent it failed. "Not delivered" is the truth.
                logger.warning(
                    "Could not push to a %s customer (%s)", handoff.channel, type(error).__name__
                )
                return False
            return True
    return False


async def expire_unclaimed(
    desk: HandoffDesk, timeout: timedelta, push: Callable[[HandoffView, str], Awaitable[bool]]
) -> list[HandoffView]:
    """Time out handoffs nobody claimed and tell their customers; the bot answers again."""
    expired = desk.expire_unclaimed(timeout)
    for handoff in expired:
        try:
            await push(handoff, NOBODY_FREE)
        except Exception:
            logger.exception("Could not tell a customer that no agent was free")
    return expired


class AgentApiChannel(InputChannel):
    """Mounted at ``/agents/api``; not a customer channel."""

    @classmethod
    def name(cls) -> str:
        return "agents"

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> AgentApiChannel:
        return cls()

    def __init__(self) -> None:
        self.token = os.environ.get("AGENT_API_TOKEN", "").strip()
        minutes = os.environ.get("HANDOFF_CLAIM_TIMEOUT_MINUTES", "").strip()
        self.claim_timeout = timedelta(minutes=float(minutes) if minutes else 15)
        self._desk: HandoffDesk | None = None
        self._sweeper: asyncio.Task | None = None

    def url_prefix(self) -> str:
        return "/agents/api"

    @property
    def desk(self) -> HandoffDesk:
        if self._desk is None:
            self._desk = HandoffDesk(crm_settings.database_url())
        return self._desk

    def _refused(self, request: Request) -> HTTPResponse | None:
        if not self.token:
            return response.json({"error": "The agent API is off (set AGENT_API_TOKEN)."}, 404)
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return response.json({"error": "A valid bearer token is required."}, 401)
        return None

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        """The agent routes; every one checks the token first."""
        api = Blueprint("rapport_agent_api", __name__)

        @api.listener("after_server_start")
        async def start_sweeper(app: Any, loop: Any) -> None:
            async def push(handoff: HandoffView, text: str) -> bool:
                return await push_to_customer(app, handoff, text)

            async def sweep_forever() -> None:
                while True:
                    await asyncio.sleep(SWEEP_INTERVAL_SECONDS)
                    try:
                        await expire_unclaimed(self.desk, self.claim_timeout, push)
                    except CrmError as error:
                        logger.warning("Handoff timeout sweep failed (%s)", type(error).__name__)

            self._sweeper = asyncio.create_task(sweep_forever())

        @api.listener("before_server_stop")
        async def stop_sweeper(app: Any, loop: Any) -> None:
            if self._sweeper is not None:
                self._sweeper.cancel()

        def body_of(request: Request) -> dict[str, Any]:
            try:
                data = json.loads(request.body or b"{}")
            except ValueError as error:
                raise InvalidInput("body", "The body must be a JSON object.") from error
            if not isinstance(data, dict):
                raise InvalidInput("body", "The body must be a JSON object.")
            return data

        async def guarded(
            request: Request, work: Callable[[], Awaitable[HTTPResponse]]
        ) -> HTTPResponse:
            refused = self._refused(request)
            if refused is not None:
                return refused
            try:
                return await work()
            except InvalidInput as error:
                return response.json({"error": error.message, "field": error.field}, 400)
            except HandoffConflict as error:
                return response.json({"error": str(error)}, 409)
            except CrmError:
                logger.exception("Agent API call failed")
                return response.json({"error": "The CRM is unavailable."}, 503)

        @api.route("/handoffs", methods=["GET"])
        async def list_handoffs(request: Request) -> HTTPResponse:
            async def work() -> HTTPResponse:
                return response.json({"handoffs": [_json(h) for h in self.desk.list()]})

            return await guarded(request, work)

        @api.route("/handoffs/<handoff_id:int>/claim", methods=["POST"])
        async def claim(request: Request, handoff_id: int) -> HTTPResponse:
            async def work() -> HTTPResponse:
                data = body_of(request)
                agent_id = str(data.get("agent_id") or "")
                handoff = self.desk.claim(handoff_id, agent_id, str(data.get("agent_name") or ""))
                await push_to_customer(request.app, handoff, JOINED.format(name=handoff.agent_name))
                return response.json({"handoff": _json(handoff)})

            return await guarded(request, work)

        @api.route("/handoffs/<handoff_id:int>/reply", methods=["POST"])
        async def reply(request: Request, handoff_id: int) -> HTTPResponse:
            async def work() -> HTTPResponse:
                data = body_of(request)
                handoff = self.desk.record_agent_reply(
                    handoff_id, str(data.get("agent_id") or ""), str(data.get("text") or "")
                )
                delivered = await push_to_customer(request.app, handoff, str(data["text"]).strip())
                return response.json({"delivered": delivered, "handoff": _json(handoff)})

            return await guarded(request, work)

        @api.route("/handoffs/<handoff_id:int>/handback", methods=["POST"])
        async def hand_back(request: Request, handoff_id: int) -> HTTPResponse:
            async def work() -> HTTPResponse:
                data = body_of(request)
                try:
                    outcome = HandbackOutcome(data.get("outcome") or "resolved")
                except ValueError as error:
                    raise InvalidInput("outcome", "Use resolved or needs_follow_up.") from error
                handoff = self.desk.hand_back(handoff_id, str(data.get("agent_id") or ""), outcome)
                await push_to_customer(request.app, handoff, HANDED_BACK, CSAT_BUTTONS)
                return response.json({"handoff": _json(handoff)})

            return await guarded(request, work)

        return api
