"""Slack channel on slack-bolt (async) behind Rasa's Sanic server.

Every request's signature and timestamp are verified here, in one place, before bolt
sees it (bad or stale: 401 and one log line without the body, nothing stored); bolt
acknowledges events at once; the conversation runs after the ack, so a slow
turn never makes Slack retry. Each ``event_id`` is processed once, whatever Slack's
retries. Customer text is decoded from Slack's markup (``connectors.slack_markup``)
before the inbound step. DMs and @mentions are answered in the thread they came from;
buttons are Block Kit; the bot ignores its own and other bots' messages. Socket Mode
(SLACK_APP_TOKEN) replaces the public URL during development.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from rasa.core.channels.channel import OutputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse
from slack_bolt.adapter.sanic import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from bot import settings as bot_settings
from bot.handoff_service import HandoffService
from connectors.dedupe import Deduplicator
from connectors.inbound import OnNewMessage, ScreenedInputChannel
from connectors.refusals import refuse
from connectors.slack_agents import register_agent_console
from connectors.slack_markup import plain_text
from crm_bridge.errors import MessageNotTaken

logger = logging.getLogger(__name__)

API_TIMEOUT_SECONDS = 10
MENTION = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>\s*")
BUTTON_ACTION = re.compile(r"^rapport_button_\d+$")
IGNORED_SUBTYPES = {"message_changed", "message_deleted", "bot_message", "channel_join"}


def slack_sender_id(team: str | None, user: str) -> str:
    """One conversation per Slack user (per workspace)."""
    return f"{team or 'T'}.{user}"


def button_blocks(text: str, buttons: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A text section and an actions block with one button per option."""
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "action_id": f"rapport_button_{index}",
                    "text": {"type": "plain_text", "text": button["title"][:75]},
                    "value": button["payload"][:2000],
                }
                for index, button in enumerate(buttons[:25])
            ],
        },
    ]


class SlackOutput(OutputChannel):
    """Posts replies in the channel and thread the customer wrote in."""

    @classmethod
    def name(cls) -> str:
        return "slack"

    def __init__(self, client: AsyncWebClient, channel: str, thread_ts: str | None) -> None:
        self.client = client
        self.channel = channel
        self.thread_ts = thread_ts

    async def send_text_message(self, recipient_id: str, text: str, **kwargs: Any) -> None:
        await self._post(text=text)

    async def send_text_with_buttons(
        self, recipient_id: str, text: str, buttons: list[dict[str, Any]], **kwargs: Any
    ) -> None:
        await self._post(text=text, blocks=button_blocks(text, buttons))

    async def _post(self, **message: Any) -> None:
        try:
            await self.client.chat_postMessage(
                channel=self.channel, thread_ts=self.thread_ts, **message
            )
        except SlackApiError as error:
            logger.error("Slack refused a reply: %s", error.response.get("error"))


class SlackChannel(ScreenedInputChannel):
    """``POST /webhooks/slack/events`` (events and interactivity); disabled without a token."""

    @classmethod
    def name(cls) -> str:
        return "slack"

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> SlackChannel:
        return cls()

    def __init__(self) -> None:
        self.settings = bot_settings.current()
        self.enabled = bool(self.settings.slack_bot_token)
        self.max_message_chars = self.settings.max_message_chars
        self.verifier = (
            SignatureVerifier(self.settings.slack_signing_secret)
            if self.settings.slack_signing_secret
            else None
        )
        self.dedupe = Deduplicator(self.settings.redis_url, "rapport:slack:event")
        self.app: AsyncApp | None = None
        self.sanic_app: Any = None

    def build_app(self, on_new_message: OnNewMessage) -> AsyncApp:
        """The bolt app with Rapport's listeners."""
        client = AsyncWebClient(
            token=self.settings.slack_bot_token,
            base_url=self.settings.slack_api_base_url,
            timeout=API_TIMEOUT_SECONDS,
        )
        app = AsyncApp(
            token=self.settings.slack_bot_token,
            signing_secret=self.settings.slack_signing_secret or None,
            client=client,
            process_before_response=False,
            # Verified in `events` below (bolt's own check logs refused bodies at INFO).
            request_verification_enabled=False,
        )

        async def relay(
            body: dict[str, Any], user: str, text: str, channel: str, thread_ts: str | None
        ) -> None:
            event_id = body.get("event_id") or f"{channel}:{thread_ts}:{text}"
            if not await self.dedupe.first_time(str(event_id)):
                logger.info("Skipping a repeated Slack delivery")
                return
            output = SlackOutput(client, channel, thread_ts)
            sender = slack_sender_id(body.get("team_id"), user)
            try:
                await on_new_message(
                    UserMessage(
                        plain_text(text),
                        output,
                        sender,
                        input_channel=self.name(),
                        metadata={"slack": {"channel": channel, "thread_ts": thread_ts}},
                    )
                )
            except MessageNotTaken as error:
                await output.send_text_message(sender, error.customer_text)

        agents_channel = self.settings.slack_agent_channel
        agent_thread_message = None
        if agents_channel:
            service = HandoffService(lambda: self.sanic_app)
            agent_thread_message = register_agent_console(app, service, self.dedupe)

        @app.event("message")
        async def direct_message(event: dict[str, Any], body: dict[str, Any]) -> None:
            if agent_thread_message is not None and event.get("channel") == agents_channel:
                await agent_thread_message(event, body)
                return
            if event.get("channel_type") != "im" or event.get("bot_id"):
                return
            if event.get("subtype") in IGNORED_SUBTYPES or not event.get("user"):
                return
            await relay(
                body,
                event["user"],
                event.get("text") or "",
                event["channel"],
                event.get("thread_ts"),
            )

        @app.event("app_mention")
        async def mention(event: dict[str, Any], body: dict[str, Any]) -> None:
            # In the agents' channel a mention is agents' talk (the thread handler has
            # it), never a customer conversation.
            if (
                event.get("bot_id")
                or not event.get("user")
                or event.get("channel") == agents_channel
            ):
                return
            text = MENTION.sub("", event.get("text") or "").strip()
            thread = event.get("thread_ts") or event.get("ts")
            await relay(body, event["user"], text, event["channel"], thread)

        @app.action(BUTTON_ACTION)
        async def button(ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
            await ack()
            container = body.get("container") or {}
            channel = (body.get("channel") or {}).get("id") or container.get("channel_id")
            thread = container.get("thread_ts") or (body.get("message") or {}).get("thread_ts")
            user = (body.get("user") or {}).get("id")
            if not channel or not user:
                return
            press = {
                "event_id": f"action:{body.get('trigger_id') or action.get('action_ts')}",
                "team_id": (body.get("team") or {}).get("id"),
            }
            await relay(press, user, action.get("value") or "", channel, thread)

        return app

    async def push(
        self, sender_id: str, text: str, buttons: list[dict[str, Any]] | None = None
    ) -> None:
        """Send a direct message to a customer outside a turn (e.g. an agent's reply)."""
        if self.app is None:
            raise RuntimeError("Slack is not configured")
        output = SlackOutput(self.app.client, sender_id.split(".", 1)[-1], None)
        if buttons:
            await output.send_text_with_buttons(sender_id, text, buttons)
        else:
            await output.send_text_message(sender_id, text)

    def verification_failure(self, request: Request) -> str | None:
        """Why a request is not Slack's (bad or stale signature), or None when it is."""
        if self.verifier is None:
            return "Slack events arrive over Socket Mode here, not HTTP"
        timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
        signature = request.headers.get("X-Slack-Signature", "")
        if not timestamp.isdigit() or not signature:
            return "missing Slack signature"
        if not self.verifier.is_valid(request.body or b"", timestamp, signature):
            return "bad or expired Slack signature"
        return None

    def routes(self, on_new_message: OnNewMessage) -> Blueprint:
        """``/`` health and ``/events`` for Slack's Events API and interactivity."""
        slack = Blueprint("rapport_slack", __name__)
        if self.enabled:
            self.app = self.build_app(on_new_message)
        handler = AsyncSlackRequestHandler(self.app) if self.app else None

        @slack.listener("after_server_start")
        async def socket_mode(app: Any, loop: Any) -> None:
            self.sanic_app = app
            if self.app is not None and self.settings.slack_app_token:
                from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

                await AsyncSocketModeHandler(
                    self.app, self.settings.slack_app_token
                ).connect_async()
                logger.info("Slack channel connected in Socket Mode")

        @slack.route("/", methods=["GET"])
        async def health(request: Request) -> HTTPResponse:
            return response.json({"status": "ok" if self.enabled else "disabled"})

        @slack.route("/events", methods=["POST"])
        async def events(request: Request) -> HTTPResponse:
            if handler is None:
                return refuse(request, 404, "Slack is not configured")
            failure = self.verification_failure(request)
            if failure is not None:
                return refuse(request, 401, failure)
            try:
                return await handler.handle(request)
            except ValueError:
                # bolt parses the body after we verified it; a signed but garbled body
                # (JSON or form) is the sender's error, not ours.
                return refuse(request, 400, "The body is not a Slack payload.")

        return slack
