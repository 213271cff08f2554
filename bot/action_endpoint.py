"""Rasa's call to the action server, with a deadline and a polite answer when it fails.

Rasa waits up to five minutes for a custom action and, when the action server is down,
logs the error and says nothing to the customer. Here the call gives up after
``ACTION_TIMEOUT_SECONDS`` (connecting: :data:`CONNECT_TIMEOUT_SECONDS`), and an action
server that is down, hung or failing answers as if the action had said
``utter_action_trouble``: sorry, try again in a minute, or talk to a person. The
conversation goes on when the server is back, because nothing was recorded in between.

While the action server is down, a request for a person (``action_handoff_to_human``)
is still honoured: the Rasa side asks the handoff service itself, so the "Talk to a
person" button of the trouble answer does what it says.

A 400 still reaches Rasa unchanged: it is how a form's validation rejects a slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Mapping
from typing import Any

import aiohttp
from rasa.utils.endpoints import ClientResponseError, EndpointConfig

from bot.handoff_service import HandoffAsk, HandoffService
from bot.handoff_wording import handoff_answer_text
from crm_bridge.errors import RapportError
from crm_bridge.gateway import ConversationRef
from crm_bridge.handoff import HandoffReason

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 2
TROUBLE_RESPONSE = "utter_action_trouble"
HANDOFF_ACTION = "action_handoff_to_human"
RECENT_MESSAGES = 10
DEFAULT_CHANNEL = "rest"


def trouble_answer() -> dict[str, Any]:
    """What the action server would answer if the action had said only the trouble response."""
    return {"events": [], "responses": [{"response": TROUBLE_RESPONSE}]}


class ActionServerEndpoint(EndpointConfig):
    """The action server's endpoint: bounded waits, and trouble answered, not swallowed."""

    def __init__(self, timeout_seconds: float, **config: Any) -> None:
        super().__init__(**config)
        self.timeout_seconds = timeout_seconds

    @classmethod
    def replacing(cls, endpoint: EndpointConfig, timeout_seconds: float) -> ActionServerEndpoint:
        """The same endpoint (url, headers, token, certificate) with our behaviour."""
        return cls(
            timeout_seconds,
            url=endpoint.url,
            params=endpoint.params,
            headers=endpoint.headers,
            basic_auth=endpoint.basic_auth,
            token=endpoint.token,
            token_name=endpoint.token_name,
            cafile=endpoint.cafile,
            **endpoint.kwargs,
        )

    async def request(
        self,
        method: str = "post",
        subpath: str | None = None,
        content_type: str | None = "application/json",
        compress: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Call the action server; on failure answer :func:`trouble_answer` instead."""
        kwargs["timeout"] = aiohttp.ClientTimeout(
            total=self.timeout_seconds, connect=CONNECT_TIMEOUT_SECONDS
        )
        action = action_name(kwargs.get("json"))
        try:
            return await super().request(method, subpath, content_type, compress, **kwargs)
        except ClientResponseError as error:
            if error.status == 400:
                raise  # a form validation's rejection, Rasa's to handle
            logger.error("The action server answered %s for %s", error.status, action)
        except asyncio.TimeoutError:
            logger.error(
                "The action server did not answer %s within %s s", action, self.timeout_seconds
            )
        except aiohttp.ClientError as error:
            logger.error(
                "The action server is unreachable for %s (%s)", action, type(error).__name__
            )
        return await answer_without_actions(kwargs.get("json"))


async def answer_without_actions(body: Any) -> dict[str, Any]:
    """What the customer gets when the action server cannot run ``body``'s action: a
    person when that is what they asked for (and the CRM records it), else the trouble
    answer."""
    if action_name(body) == HANDOFF_ACTION and isinstance(body.get("tracker"), Mapping):
        try:
            text = await asyncio.to_thread(hand_over, body["tracker"])
        except RapportError as error:
            logger.error("No handoff without the action server either (%s)", type(error).__name__)
        else:
            return {"events": [], "responses": [{"text": text}]}
    return trouble_answer()


@functools.lru_cache(maxsize=1)
def handoff_service() -> HandoffService:
    """The handoff service with the configured CRM, agents' channel and hours."""
    return HandoffService()


def hand_over(tracker: Mapping[str, Any]) -> str:
    """Queue the conversation (Rasa's tracker as JSON) for a person; the customer's answer.
    Blocking (SQL): run in a worker thread."""
    events = [event for event in tracker.get("events") or [] if isinstance(event, Mapping)]
    sender = str(tracker["sender_id"])
    channel = str(tracker.get("latest_input_channel") or DEFAULT_CHANNEL)
    recent = []
    for event in events:
        text = str(event.get("text") or "").strip()
        if event.get("event") in {"user", "bot"} and text and not text.startswith("/"):
            recent.append(("Customer" if event["event"] == "user" else "Bot", text))
    service = handoff_service()
    contact = None
    with contextlib.suppress(RapportError):  # unknown when the CRM is down: still a person
        contact = service.gateway.find_contact_by_identity(channel, sender)
    ask = HandoffAsk(
        conversation=ConversationRef.from_events(sender, channel, events),
        reason=HandoffReason.CUSTOMER_REQUEST,
        contact=contact,
        recent=recent[-RECENT_MESSAGES:],
    )
    answer = service.request(ask)
    return handoff_answer_text(answer, bool(contact and contact.email))


def action_name(body: Any) -> str:
    """The action a request asks for (never the tracker it carries: that holds messages)."""
    if isinstance(body, dict) and isinstance(body.get("next_action"), str):
        return body["next_action"]
    return "an action"
