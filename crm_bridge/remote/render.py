"""Our records as the text a remote CRM shows: a conversation's transcript, a ticket's
description. Shared by the remote CRM adapters (HubSpot notes, Salesforce tasks...).

Every rendering ends with a marker (``[rapport:interaction:42]``) naming the local record:
an adapter that crashed between the remote write and storing the remote id finds the
record again by it. Payload shapes: ``crm_bridge.outbox_payloads``.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

_AUTHORS = {
    "customer": "Customer",
    "bot": "Assistant",
    "inbound": "Customer",
    "outbound": "Assistant",
}


def parse_time(value: Any) -> datetime | None:
    """A payload time (ISO 8601 text or a datetime) as an aware UTC datetime, or None."""
    if isinstance(value, str) and value:
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    # Our database stores UTC; a naive time is UTC.
    return (
        value.replace(tzinfo=timezone.utc)
        if value.tzinfo is None
        else value.astimezone(timezone.utc)
    )


def contact_identities(person: dict[str, Any]) -> list[str]:
    """A contact payload's channel identities as ``channel:external_id`` (lower case).

    The outbox records ``{"channel", "external_id"}`` pairs; plain strings are accepted too.
    """
    found = []
    for identity in person.get("identities") or []:
        if isinstance(identity, dict):
            channel, external = identity.get("channel"), identity.get("external_id")
            text = f"{channel}:{external}" if channel and external else ""
        else:
            text = str(identity or "")
        if text:
            found.append(text.strip().lower())
    return found


def conversation_text(
    payload: dict[str, Any],
    marker: str,
    as_html: bool,
    with_intents: bool,
    max_chars: int,
    markup: bool = False,
) -> str:
    """A conversation: channel, times, outcome, intents, then who said what and when.

    ``as_html``: a paragraph per message, authors in bold; else one line per message.
    ``markup``: the CRM shows the text as HTML (HubSpot's note body), so plain lines are
    escaped too and broken with ``<br>``. The transcript is cut to fit ``max_chars``; the
    heading and the marker never are.
    """
    esc: Callable[[str], str] = html.escape if as_html or markup else str
    head = [
        f"Conversation on {payload.get('channel') or 'an unknown channel'}, "
        f"{_clock(payload.get('started_at'), True)} to {_clock(payload.get('ended_at'), True)}"
        f" · outcome: {payload.get('outcome') or 'unknown'}"
    ]
    intents = [str(i) for i in payload.get("intents") or []]
    if with_intents and intents:
        head.append("Intents: " + ", ".join(intents))
    if payload.get("summary"):
        head.append(f"Summary: {payload['summary']}")
    lines = [
        (
            _clock(line.get("at") or line.get("time"), False),
            _author(line),
            str(line.get("text") or ""),
        )
        for line in payload.get("lines") or payload.get("transcript") or []
    ]
    if as_html:
        rendered = [
            f"<p><strong>{esc(head[0])}</strong></p>",
            *(f"<p>{esc(h)}</p>" for h in head[1:]),
        ]
        body = [
            f"<p>{esc(at)} <strong>{esc(who)}</strong>: {esc(text)}</p>" for at, who, text in lines
        ]
        tail = f"<p>{esc(marker)}</p>"
    else:
        rendered = [*(esc(h) for h in head), ""]
        body = [esc(f"{at} {who}: {text}") for at, who, text in lines]
        tail = esc(marker)
    budget = max_chars - sum(len(r) + 1 for r in rendered) - len(tail) - 100
    kept: list[str] = []
    for index, line in enumerate(body):
        if len(line) + 1 > budget:
            cut = f"… {len(body) - index} more messages are in Rapport's transcript"
            kept.append(f"<p><em>{cut}</em></p>" if as_html else cut)
            break
        budget -= len(line) + 1
        kept.append(line)
    return ("" if as_html else "<br>" if markup else "\n").join([*rendered, *kept, tail])


def ticket_text(payload: dict[str, Any], marker: str) -> str:
    """A ticket's description: what was reported, the order, our reference and marker."""
    parts = [str(payload.get("description") or "").strip()]
    if payload.get("order_number"):
        parts.append(f"Order: {payload['order_number']}")
    if payload.get("item"):
        parts.append(f"Item: {payload['item']}")
    if payload.get("reference"):
        parts.append(f"Rapport reference: {payload['reference']}")
    parts.append(marker)
    return "\n\n".join(p for p in parts if p)


def _author(line: dict[str, Any]) -> str:
    author = str(line.get("author") or line.get("direction") or "")
    if author.startswith("agent:"):
        return f"Agent {author.removeprefix('agent:')}"
    return _AUTHORS.get(author, author or "?")


def _clock(value: Any, with_date: bool) -> str:
    """A payload time as UTC text (``2024-05-01 10:02 UTC`` or ``10:02:13``)."""
    moment = parse_time(value)
    if moment is None:
        return "?"
    return moment.strftime("%Y-%m-%d %H:%M UTC" if with_date else "%H:%M:%S")
