"""Rasa's call to the action server, with a deadline and a polite answer when it fails.

Rasa waits up to five minutes for a custom action and, when the action server is down,
logs the error and says nothing to the customer. Here the call gives up after
``ACTION_TIMEOUT_SECONDS`` (connecting: :data:`CONNECT_TIMEOUT_SECONDS`), and an action
server that is down, hung or failing answers as if the action had said
``utter_action_trouble``: sorry, try again in a minute, or talk to a person. The
conversation goes on when the server is back, because nothing was recorded in between.

A 400 still reaches Rasa unchanged: it is how a form's validation rejects a slot.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
from rasa.utils.endpoints import ClientResponseError, EndpointConfig

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 2
TROUBLE_RESPONSE = "utter_action_trouble"


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
        return trouble_answer()


def action_name(body: Any) -> str:
    """The action a request asks for (never the tracker it carries: that holds messages)."""
    if isinstance(body, dict) and isinstance(body.get("next_action"), str):
        return body["next_action"]
    return "an action"
