"""Grouping inbox messages by meaning with the bot's own shipped MiniLM encoder."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from bot.workbench.clustering import ItemGroup, MiniLmEncoder, group_items
from crm_bridge.inbox import InboxItem

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def encoder() -> MiniLmEncoder:
    return MiniLmEncoder()


def inbox(*lines: str | tuple[str, str | None, tuple[str, ...]]) -> list[InboxItem]:
    """Items as the inbox lists them, newest first; a line is a text or (text, intent,
    reasons)."""
    items = []
    for n, line in enumerate(lines):
        text, intent, reasons = line if isinstance(line, tuple) else (line, None, ("fallback",))
        items.append(
            InboxItem(
                message_id=100 - n,
                interaction_id=10 + n,
                channel="rest",
                sent_at=NOW - timedelta(minutes=n),
                text=text,
                intent=intent,
                confidence=0.3 if intent else None,
                reasons=reasons,
            )
        )
    return items


def texts(group: ItemGroup) -> list[str]:
    return [item.text for item in group.items]


def test_paraphrases_group_and_other_requests_do_not(encoder: MiniLmEncoder) -> None:
    groups = group_items(
        inbox("where is my parcel", "cancel my order", "where's my package"), encoder
    )
    assert [texts(group) for group in groups] == [
        ["where is my parcel", "where's my package"],
        ["cancel my order"],
    ]
    assert [group.size for group in groups] == [2, 1]


def test_identical_texts_always_share_a_group(encoder: MiniLmEncoder) -> None:
    items = inbox("hello there", "hello here", "Hello  there", "hello there")
    groups = group_items(items, encoder, similarity=1.0)
    assert [texts(group) for group in groups] == [
        ["hello there", "Hello  there", "hello there"],
        ["hello here"],
    ]
    assert groups[0].label_text == "hello there"


def test_groups_come_largest_first_named_by_their_most_central_message(
    encoder: MiniLmEncoder,
) -> None:
    items = inbox(
        "what are your opening hours",
        ("please cancel my order", "cancel_order", ("low_confidence",)),
        ("where is my parcel", "nlu_fallback", ("low_confidence", "fallback")),
        ("has my parcel arrived yet", "nlu_fallback", ("fallback",)),
        ("cancel my order", "cancel_order", ("low_confidence",)),
        ("where is my parcel", "order_status", ("low_confidence",)),
        ("my parcel hasnt arrived", "nlu_fallback", ("fallback",)),
    )

    groups = group_items(items, encoder)

    assert [group.size for group in groups] == [4, 2, 1]
    assert [len(group.items) for group in groups] == [4, 2, 1]
    assert groups[0].label_text == "where is my parcel"
    # Fallbacks are no vote: one "order_status" outweighs three "nlu_fallback".
    assert groups[0].top_intent == "order_status"
    assert groups[1].top_intent == "cancel_order"
    assert texts(groups[1]) == ["please cancel my order", "cancel my order"]
    assert (groups[2].label_text, groups[2].top_intent) == ("what are your opening hours", None)
    # Every item in exactly one group, in the inbox's order (newest first).
    grouped = [item for group in groups for item in group.items]
    assert sorted(item.message_id for item in grouped) == sorted(i.message_id for i in items)
    for group in groups:
        assert [item.sent_at for item in group.items] == sorted(
            (item.sent_at for item in group.items), reverse=True
        )


def test_nothing_to_group(encoder: MiniLmEncoder) -> None:
    assert group_items([], encoder) == []
    with pytest.raises(ValueError, match="similarity"):
        group_items(inbox("hi"), encoder, similarity=0.0)
    assert [g.size for g in group_items(inbox("hi"), encoder)] == [1]


def test_embeddings_are_unit_rows_cached_by_text() -> None:
    encoder = MiniLmEncoder(cache_size=2)

    first = encoder.encode(["where is my parcel", "cancel my order"])
    assert first.shape == (2, 384)
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    assert (encoder.hits, encoder.misses) == (0, 2)

    again = encoder.encode(["where is my parcel"])
    assert (encoder.hits, encoder.misses) == (1, 2)
    assert np.array_equal(again[0], first[0])

    # "cancel my order" was used least recently: it makes room for the new text.
    encoder.encode(["hello"])
    assert len(encoder) == 2
    encoder.encode(["where is my parcel", "cancel my order"])
    assert (encoder.hits, encoder.misses) == (2, 4)
    assert encoder.encode([]).shape == (0, 384)


async def test_encoding_refuses_the_event_loop_and_runs_in_a_thread(
    encoder: MiniLmEncoder,
) -> None:
    items = inbox("where is my parcel", "where's my package")
    with pytest.raises(RuntimeError, match="thread"):
        group_items(items, encoder)
    groups = await asyncio.to_thread(group_items, items, encoder)
    assert [group.size for group in groups] == [2]
