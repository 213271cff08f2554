"""The agents' Slack channel: one message per handoff, and a thread that relays the talk.

The action server announces a handoff here (a summary and a **Claim** button) and relays
every customer message into the handoff's thread while an agent holds it; the Rasa
server (``connectors.slack_agents``) handles the clicks and the agents' thread replies.
Both build their messages with this module, so the channel reads the same whoever
posted. Calls are synchronous with a timeout; the Rasa server runs them in a thread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot import settings as bot_settings
from crm_bridge.errors import Unavailable

logger = logging.getLogger(__name__)

API_TIMEOUT_SECONDS = 10
CLAIM_ACTION = "rapport_handoff_claim"
HANDBACK_ACTION_PREFIX = "rapport_handoff_handback_"
HANDBACK_OUTCOMES = {"resolved": "Resolved", "needs_follow_up": "Needs follow-up"}
REASONS = {
    "customer_request": "the customer asked for a person",
    "repeated_fallback": "the bot did not understand the customer twice in a row",
    "action_failed": "the bot could not complete a request (a system was unavailable)",
    "agent_initiative": "an agent took the conversation over",
}
MAX_LINE = 300


class AgentConsoleError(Unavailable):
    """Slack refused or could not be reached; the handoff itself stands."""


@dataclass(frozen=True)
class HandoffSummary:
    """What an agent needs to decide to take a conversation, without opening it."""

    handoff_id: int
    reason: str
    channel: str
    contact: str | None = None
    ticket: str | None = None
    queue_position: int = 0
    intents: list[str] = field(default_factory=list)
    orders: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    recent: list[tuple[str, str]] = field(default_factory=list)  # (who, text), oldest first


def _clip(text: str, limit: int = MAX_LINE) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def summary_text(summary: HandoffSummary) -> str:
    """The plain-text fallback of the summary (notifications, screen readers)."""
    who = summary.contact or "an unlinked customer"
    return f"Handoff #{summary.handoff_id}: {who} on {summary.channel} needs a person."


def summary_blocks(summary: HandoffSummary) -> list[dict[str, Any]]:
    """The handoff's message: who, why, context, the last messages and a Claim button."""
    facts = [
        f"*Contact:* {summary.contact or 'not linked'}",
        f"*Channel:* {summary.channel}",
        f"*Reason:* {REASONS.get(summary.reason, summary.reason)}",
        f"*Ticket:* {summary.ticket or '-'}",
        f"*Intents:* {', '.join(summary.intents) or '-'}",
        f"*Orders / references:* {', '.join([*summary.orders, *summary.references]) or '-'}",
    ]
    if summary.queue_position:
        facts.append(f"*Queue position:* {summary.queue_position}")
    recent = "\n".join(f"*{who}:* {_clip(text)}" for who, text in summary.recent) or "_none_"
    return [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": f"Handoff #{summary.handoff_id}"},
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(facts)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*Last messages*\n{recent}"}},
        {
            "type": "actions",
            "block_id": "rapport_handoff_claim",
            "elements": [
                {
                    "type": "button",
                    "action_id": CLAIM_ACTION,
                    "style": "primary",
                    "text": {"type": "plain_text", "text": "Claim"},
                    "value": str(summary.handoff_id),
                }
            ],
        },
    ]


def handback_blocks(handoff_id: int, agent_name: str) -> list[dict[str, Any]]:
    """The thread note after a claim, with the hand-back buttons."""
    return [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": (
                    f"*{agent_name}* has the conversation; the bot is silent. Reply in this thread "
                    "to write to the customer. When done, hand it back:"
                ),
            },
        },
        {
            "type": "actions",
            "block_id": "rapport_handoff_handback",
            "elements": [
                {
                    "type": "button",
                    "action_id": f"{HANDBACK_ACTION_PREFIX}{outcome}",
                    "text": {"type": "plain_text", "text": f"Hand back: {label}"},
                    "value": str(handoff_id),
                }
                for outcome, label in HANDBACK_OUTCOMES.items()
            ],
        },
    ]


def without_buttons(blocks: list[dict[str, Any]], note: str) -> list[dict[str, Any]]:
    """A posted message's blocks with its buttons replaced by a status line."""
    kept = [block for block in blocks if block.get("type") != "actions"]
    return [*kept, {"type": "context", "elements": [{"type": "mrkdwn", "text": note}]}]


class SlackAgentConsole:
    """Posts to the agents' channel with the bot token (scope ``chat:write``)."""

    def __init__(self, token: str, channel: str, base_url: str) -> None:
        self.channel = channel
        self.client = WebClient(token=token, base_url=base_url, timeout=API_TIMEOUT_SECONDS)

    @classmethod
    def from_environment(cls) -> SlackAgentConsole | None:
        """The console when SLACK_AGENT_CHANNEL and SLACK_BOT_TOKEN are set, else None."""
        settings = bot_settings.current()
        if not (settings.slack_agent_channel and settings.slack_bot_token):
            return None
        return cls(
            settings.slack_bot_token, settings.slack_agent_channel, settings.slack_api_base_url
        )

    def announce(self, summary: HandoffSummary) -> str:
        """Post the handoff's summary; returns the message ts (the thread's id)."""
        reply = self._call(
            "chat_postMessage",
            channel=self.channel,
            text=summary_text(summary),
            blocks=summary_blocks(summary),
            unfurl_links=False,
        )
        return str(reply["ts"])

    def post_in_thread(
        self,
        thread: str,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        channel: str | None = None,
    ) -> None:
        """A note or a relayed customer message in the handoff's thread (in ``channel``,
        where the handoff was announced; by default the configured agents' channel)."""
        extra = {"blocks": blocks} if blocks else {}
        self._call(
            "chat_postMessage",
            channel=channel or self.channel,
            thread_ts=thread,
            text=text,
            **extra,
        )

    def relay_customer_message(self, thread: str, text: str, channel: str | None = None) -> None:
        """A customer's message, as it arrived, in the thread the agent works in."""
        self.post_in_thread(thread, f":speech_balloon: *Customer:* {text}", channel=channel)

    def update(self, ts: str, text: str, blocks: list[dict[str, Any]]) -> None:
        """Rewrite a message of ours (e.g. the summary once it is claimed)."""
        self._call("chat_update", channel=self.channel, ts=ts, text=text, blocks=blocks)

    def tell_agent(self, user: str, text: str, thread: str | None = None) -> None:
        """A note only this agent sees (e.g. "someone else claimed it first")."""
        extra = {"thread_ts": thread} if thread else {}
        self._call("chat_postEphemeral", channel=self.channel, user=user, text=text, **extra)

    def _call(self, method: str, **arguments: Any) -> Any:
        try:
            return getattr(self.client, method)(**arguments)
        except SlackApiError as error:
            raise AgentConsoleError(
                f"Slack refused {method}: {error.response.get('error')}"
            ) from error
        except OSError as error:  # timeouts and refused connections
            raise AgentConsoleError(
                f"Slack unreachable for {method}: {type(error).__name__}"
            ) from error
