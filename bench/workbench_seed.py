"""Synthetic CRM history for the workbench benchmark and tests: conversations with
transcripts, outcomes, handoffs and ratings, written in bulk (Core inserts, not ORM)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from sqlalchemy import insert, select
from sqlalchemy.orm import sessionmaker

from crm_bridge import models
from crm_bridge.db import unit_of_work

CHANNELS = ("rest", "telegram", "slack", "web")
INTENTS = ("order_status", "start_return", "delivery_problem", "cancel_order", "faq", "complaint")
OUTCOMES = ("resolved_by_bot", "ticket_created", "handed_off", "abandoned")
# Customer lines the bot was unsure about: what the inbox shows and groups.
UNSURE = (
    "my parcel never showed up and the tracking is stuck",
    "the package is stuck in tracking",
    "can I pay with a gift card",
    "do you take gift cards",
    "is there a student discount",
    "student discount?",
    "my email is jo@example.com please change it",
)
BATCH = 5_000


def seed_history(
    factory: sessionmaker,
    conversations: int,
    lines_per_conversation: int = 20,
    days: int = 60,
    end: datetime | None = None,
    seed: int = 7,
) -> int:
    """Add ``conversations`` closed Interactions with ``lines_per_conversation`` lines each
    over the ``days`` before ``end``; returns the number of transcript lines added."""
    rng = random.Random(seed)
    end = end or datetime.now(timezone.utc)
    with unit_of_work(factory) as session:
        first_id = (
            session.execute(
                select(models.Interaction.id).order_by(models.Interaction.id.desc()).limit(1)
            ).scalar()
            or 0
        ) + 1
        interactions, messages, handoffs = [], [], []
        for n in range(conversations):
            interaction_id = first_id + n
            started = end - timedelta(seconds=rng.uniform(0, days * 86400))
            outcome = rng.choices(OUTCOMES, weights=(55, 15, 15, 15))[0]
            intents = rng.sample(INTENTS, 2)
            interactions.append(
                {
                    "id": interaction_id,
                    "sender_id": f"bench-{seed}-{n % (conversations // 3 + 1)}",
                    "session_key": f"{started.timestamp():.6f}",
                    "channel": rng.choice(CHANNELS),
                    "started_at": started,
                    "ended_at": started + timedelta(seconds=lines_per_conversation * 20),
                    "closed": True,
                    "outcome": outcome,
                    "csat": rng.randint(1, 5)
                    if outcome == "handed_off" and rng.random() < 0.6
                    else None,
                    "intents": ["greet", *intents],
                    "summary": ", ".join(intents),
                    "created_at": started,
                    "updated_at": started,
                }
            )
            for line in range(lines_per_conversation):
                at = started + timedelta(seconds=line * 20 + 1)
                inbound = line % 2 == 0
                unsure = inbound and rng.random() < 0.04
                messages.append(
                    {
                        "interaction_id": interaction_id,
                        "event_key": f"bench-{seed}-{interaction_id}-{line}",
                        "direction": "inbound" if inbound else "outbound",
                        "author": "customer" if inbound else "bot",
                        "text": rng.choice(UNSURE)
                        if unsure
                        else f"message {line} about {intents[0]}",
                        "intent": (intents[0] if not unsure else "nlu_fallback")
                        if inbound
                        else None,
                        "confidence": (rng.uniform(0.05, 0.25) if unsure else rng.uniform(0.6, 1.0))
                        if inbound
                        else None,
                        "event_ts": at.timestamp(),
                        "sent_at": at,
                    }
                )
            if outcome == "handed_off":
                requested = started + timedelta(seconds=lines_per_conversation * 10)
                handoffs.append(
                    {
                        "interaction_id": interaction_id,
                        "sender_id": f"bench-handoff-{seed}-{interaction_id}",
                        "channel": interactions[-1]["channel"],
                        "reason": "customer_request",
                        "state": "closed",
                        "requested_at": requested,
                        "claimed_at": requested + timedelta(seconds=rng.uniform(10, 600)),
                        "outcome": "resolved",
                    }
                )
        for table, rows in (
            (models.Interaction, interactions),
            (models.InteractionMessage, messages),
            (models.Handoff, handoffs),
        ):
            for start in range(0, len(rows), BATCH):
                session.execute(insert(table), rows[start : start + BATCH])
    return len(messages)
