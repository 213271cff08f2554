"""A small authenticated HTTP API for agent consoles (``/agents/api``).

List queued and held conversations, claim one (or take over any conversation from its
Interaction), reply to the customer on their own channel, and hand it back. Every request
needs ``Authorization: Bearer <AGENT_API_TOKEN>``; without that setting the API is off.
The work itself is ``connectors.handoff_service``'s, shared with the agents' Slack channel.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from rasa.core.channels.channel import InputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot import settings as bot_settings
from connectors.handoff_service import HandoffService
from crm_bridge.errors import CrmError, HandoffConflict, InvalidInput
from crm_bridge.handoff import HandbackOutcome, HandoffView

logger = logging.getLogger(__name__)

SWEEP_INTERVAL_SECONDS = 30


def _json(handoff: HandoffView) -> dict[str, Any]:
    data = asdict(handoff)
    for key, value in data.items():
        if hasattr(value, "isoformat"):
            data[key] = value.isoformat()
    return data


class AgentApiChannel(InputChannel):
    """Mounted at ``/agents/api``; not a customer channel."""

    @classmethod
    def name(cls) -> str:
        return "agents"

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> AgentApiChannel:
        return cls()

    def __init__(self) -> None:
        settings = bot_settings.current()
        self.token = settings.agent_api_token
        self.claim_timeout = timedelta(minutes=settings.handoff_claim_timeout_minutes)
        # Check often enough that a handoff waits at most a third longer than the timeout.
        self.sweep_interval = max(
            1.0, min(SWEEP_INTERVAL_SECONDS, self.claim_timeout.total_seconds() / 3)
        )
        self._app: Any = None
        self.service = HandoffService(lambda: self._app)
        self._sweeper: asyncio.Task | None = None

    def url_prefix(self) -> str:
        return "/agents/api"

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
            self._app = app

            async def sweep_forever() -> None:
                while True:
                    await asyncio.sleep(self.sweep_interval)
                    try:
                        await self.service.expire_unclaimed(self.claim_timeout)
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
                handoffs = self.service.desk.list()
                return response.json({"handoffs": [_json(h) for h in handoffs]})

            return await guarded(request, work)

        @api.route("/handoffs/<handoff_id:int>/claim", methods=["POST"])
        async def claim(request: Request, handoff_id: int) -> HTTPResponse:
            async def work() -> HTTPResponse:
                data = body_of(request)
                handoff = await self.service.claim(
                    handoff_id, str(data.get("agent_id") or ""), str(data.get("agent_name") or "")
                )
                return response.json({"handoff": _json(handoff)})

            return await guarded(request, work)

        @api.route("/handoffs/<handoff_id:int>/reply", methods=["POST"])
        async def reply(request: Request, handoff_id: int) -> HTTPResponse:
            async def work() -> HTTPResponse:
                data = body_of(request)
                handoff, delivered = await self.service.reply(
                    handoff_id, str(data.get("agent_id") or ""), str(data.get("text") or "")
                )
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
                handoff = await self.service.hand_back(
                    handoff_id, str(data.get("agent_id") or ""), outcome
                )
                return response.json({"handoff": _json(handoff)})

            return await guarded(request, work)

        @api.route("/interactions/<interaction_id:int>/take", methods=["POST"])
        async def take_over(request: Request, interaction_id: int) -> HTTPResponse:
            async def work() -> HTTPResponse:
                data = body_of(request)
                handoff = await self.service.take_over(
                    interaction_id, str(data.get("agent_id") or ""),
                    str(data.get("agent_name") or ""),
                )  # fmt: skip
                return response.json({"handoff": _json(handoff)})

            return await guarded(request, work)

        return api
