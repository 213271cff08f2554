"""Browsing the CRM's conversations: newest first, a page at a time, no transcript text
(the summary names intents and counts, never the customer's words)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from crm_bridge import models
from crm_bridge.db import unit_of_work

PAGE_SIZE = 50


@dataclass(frozen=True)
class ConversationRow:
    """One conversation in a list."""

    id: int
    channel: str | None
    started_at: datetime
    outcome: str
    closed: bool
    summary: str


def recent_conversations(
    factory: sessionmaker, before_id: int | None = None, limit: int = PAGE_SIZE
) -> list[ConversationRow]:
    """The newest conversations (by id: the order the log recorded them), older than
    ``before_id`` when given, for paging."""
    interaction = models.Interaction
    query = (
        select(
            interaction.id,
            interaction.channel,
            interaction.started_at,
            interaction.outcome,
            interaction.closed,
            interaction.summary,
        )
        .order_by(interaction.id.desc())
        .limit(max(1, min(limit, 200)))
    )
    if before_id is not None:
        query = query.where(interaction.id < before_id)
    with unit_of_work(factory) as session:
        return [ConversationRow(*row) for row in session.execute(query).all()]
