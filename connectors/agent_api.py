"""A small authenticated HTTP API for agent consoles (``/agents/api``).

List queued and held conversations, claim one (or take over any conversation from its
Interaction), reply to the customer on their own channel, and hand it back. Every request
needs ``Authorization: Bearer <AGENT_API_TOKEN>``; without that setting the API is off.
The work itself is ``bot.handoff_service``'s, shared with the agents' Slack channel;
errors are answered by kind (``connectors.refusals.status_for``): an unknown handoff is a
404, one somebody else holds a 409.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from rasa.core.channels.channel import InputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot import settings as bot_settings
from bot.handoff_service import HandoffService
from connectors.refusals import refuse, refuse_error
from crm_bridge.errors import InvalidInput, RapportError, Unavailable
from crm_bridge.handoff import HandbackOutcome, HandoffView

logger = logging.getLogger(__name__)

SWEEP_INTERVAL_SECONDS = 30
Handler = Callable[..., Coroutine[Any, Any, HTTPResponse]]


def _json(handoff: HandoffView) -> dict[str, Any]:
    data = asdict(handoff)
    for key, value in data.items():
        if hasattr(value, "isoformat"):
            data[key] = value.isoformat()
    return data


def body_of(request: Request) -> dict[str, Any]:
    """The request's JSON object; ``InvalidInput`` otherwise."""
    try:
        data = json.loads(request.body or b"{}")
    except ValueError as error:
        raise InvalidInput("body", "The body must be a JSON object.") from error
    if not isinstance(data, dict):
        raise InvalidInput("body", "The body must be a JSON object.")
    return data


def _text(data: dict[str, Any], key: str) -> str:
    return str(data.get(key) or "")


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

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        """The agent routes (each checks the token first) and the timeout sweeper."""
        api = Blueprint("rapport_agent_api", __name__)
        api.listener("after_server_start")(self.start_sweeper)
        api.listener("before_server_stop")(self.stop_sweeper)
        routes: list[tuple[Handler, str, str]] = [
            (self.list_handoffs, "/handoffs", "GET"),
            (self.claim, "/handoffs/<handoff_id:int>/claim", "POST"),
            (self.reply, "/handoffs/<handoff_id:int>/reply", "POST"),
            (self.hand_back, "/handoffs/<handoff_id:int>/handback", "POST"),
            (self.take_over, "/interactions/<interaction_id:int>/take", "POST"),
            (self.notify, "/notify", "POST"),
        ]
        for handler, path, method in routes:
            api.add_route(self._authorised(handler), path, methods=[method])
        return api

    def _authorised(self, handler: Handler) -> Handler:
        """``handler`` behind the bearer token, with our errors answered by kind."""

        @functools.wraps(handler)
        async def guarded(request: Request, **params: Any) -> HTTPResponse:
            if not self.token:
                return refuse(request, 404, "The agent API is off (set AGENT_API_TOKEN).")
            given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return refuse(request, 401, "A valid bearer token is required.")
            try:
                return await handler(request, **params)
            except RapportError as error:
                if isinstance(error, Unavailable):
                    logger.warning("Agent API call failed (%s)", type(error).__name__)
                return refuse_error(request, error)

        return guarded

    async def start_sweeper(self, app: Any, loop: Any) -> None:
        """Time out unclaimed handoffs every ``sweep_interval`` seconds."""
        self._app = app
        self._sweeper = asyncio.create_task(
            self.service.sweep(self.claim_timeout, self.sweep_interval)
        )

    async def stop_sweeper(self, app: Any, loop: Any) -> None:
        """Stop the sweeper with the server."""
        if self._sweeper is not None:
            self._sweeper.cancel()

    async def list_handoffs(self, request: Request) -> HTTPResponse:
        """``GET /handoffs``: queued and held conversations."""
        handoffs = await self.service.live_handoffs()
        return response.json({"handoffs": [_json(h) for h in handoffs]})

    async def claim(self, request: Request, handoff_id: int) -> HTTPResponse:
        """``POST /handoffs/<id>/claim`` ``{"agent_id", "agent_name"}``."""
        data = body_of(request)
        handoff = await self.service.claim(
            handoff_id, _text(data, "agent_id"), _text(data, "agent_name")
        )
        return response.json({"handoff": _json(handoff)})

    async def reply(self, request: Request, handoff_id: int) -> HTTPResponse:
        """``POST /handoffs/<id>/reply`` ``{"agent_id", "text"}``."""
        data = body_of(request)
        handoff, delivered = await self.service.reply(
            handoff_id, _text(data, "agent_id"), _text(data, "text")
        )
        return response.json({"delivered": delivered, "handoff": _json(handoff)})

    async def hand_back(self, request: Request, handoff_id: int) -> HTTPResponse:
        """``POST /handoffs/<id>/handback`` ``{"agent_id", "outcome"}``."""
        data = body_of(request)
        try:
            outcome = HandbackOutcome(data.get("outcome") or "resolved")
        except ValueError as error:
            raise InvalidInput("outcome", "Use resolved or needs_follow_up.") from error
        handoff = await self.service.hand_back(handoff_id, _text(data, "agent_id"), outcome)
        return response.json({"handoff": _json(handoff)})

    async def take_over(self, request: Request, interaction_id: int) -> HTTPResponse:
        """``POST /interactions/<id>/take`` ``{"agent_id", "agent_name"}``."""
        data = body_of(request)
        handoff = await self.service.take_over(
            interaction_id, _text(data, "agent_id"), _text(data, "agent_name")
        )
        return response.json({"handoff": _json(handoff)})

    async def notify(self, request: Request) -> HTTPResponse:
        """``POST /notify`` ``{"topic", "order" | "text", "campaign", "channels",
        "dry_run"}``: an order update or a campaign through ``can_send``, as
        ``python -m bot notify`` does (no topic: deliver what is due); the report names
        contact ids and references only."""
        from bot.notify import notify_request

        data = body_of(request)
        channels = data.get("channels")
        if channels is not None and not (
            isinstance(channels, list) and all(isinstance(c, str) for c in channels)
        ):
            raise InvalidInput("channels", "Give the channels as a list of names.")
        # The web chat's inbox of this server: without Redis it lives in this process.
        web = next(
            (
                channel
                for channel in getattr(getattr(self._app, "ctx", None), "input_channels", [])
                if channel.name() == "web" and hasattr(channel, "inbox")
            ),
            None,
        )
        report = await notify_request(
            bot_settings.current(),
            topic=_text(data, "topic"),
            order=_text(data, "order"),
            text=_text(data, "text"),
            campaign=_text(data, "campaign"),
            channels=channels,
            dry_run=bool(data.get("dry_run")),
            web_inbox=web.inbox if web is not None else None,
        )
        return response.json(report.as_dict())
