"""Slack's message encoding -> the plain text the customer saw in Slack.

Slack sends ``<@U123>`` for a mention, ``<#C123|general>`` for a channel,
``<https://x.example|label>`` for a link, ``<!here>`` for a broadcast and escapes ``&``,
``<`` and ``>`` (https://api.slack.com/reference/surfaces/formatting#escaping). NLU and
the CRM transcript get what a person read instead. Mentions become their label when
Slack gives one, otherwise ``@user``: looking up display names would cost an API call
per message.
"""

from __future__ import annotations

import re

_ENTITY = re.compile(r"<([^<>]*)>")
_BROADCASTS = {"here": "@here", "channel": "@channel", "everyone": "@everyone"}


def _entity(match: re.Match[str]) -> str:
    body = match.group(1)
    target, _, label = body.partition("|")
    if target.startswith("@"):  # user mention: <@U123> or <@U123|name>
        return f"@{label.lstrip('@')}" if label else "@user"
    if target.startswith("#"):  # channel: <#C123|general>
        return f"#{label}" if label else "#channel"
    if target.startswith("!"):  # <!here>, <!subteam^S1|@team>, <!date^...|fallback>
        name = target[1:].split("^", 1)[0]
        return label or _BROADCASTS.get(name, f"@{name}")
    if label:  # <https://x.example|label>, <mailto:a@b.example|a@b.example>
        return label
    return target.removeprefix("mailto:")


def plain_text(text: str) -> str:
    """The text as displayed in Slack: entities resolved, HTML escapes decoded."""
    text = _ENTITY.sub(_entity, text)
    # Slack escapes exactly these three; &amp; last so "&amp;lt;" stays "&lt;".
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
