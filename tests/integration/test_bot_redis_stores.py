"""With REDIS_URL set, every Rasa instance shares conversations and locks through Redis."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
import redis
from rasa.core.lock_store import RedisLockStore
from rasa.core.tracker_store import RedisTrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import SessionStarted, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from bot.stores import EnvLockStore, EnvTrackerStore

pytestmark = pytest.mark.integration

REDIS_URL = "redis://127.0.0.1:6379/9"


@pytest.fixture
def redis_env(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    client.ping()
    yield client
    for key in client.scan_iter("rapport*"):
        client.delete(key)


async def test_a_conversation_saved_by_one_instance_is_read_by_another(redis_env) -> None:
    domain = Domain.empty()
    first, second = EnvTrackerStore(domain=domain), EnvTrackerStore(domain=domain)
    assert isinstance(first, RedisTrackerStore) and isinstance(second, RedisTrackerStore)

    sender = f"it-{uuid.uuid4().hex}"
    tracker = DialogueStateTracker.from_events(
        sender, [SessionStarted(), UserUttered("hello there", {"name": "greet", "confidence": 1.0})]
    )
    await first.save(tracker)

    restored = await second.retrieve(sender)
    assert restored is not None
    assert restored.latest_message is not None
    assert restored.latest_message.text == "hello there"
    assert any(key.decode().startswith("rapport") for key in redis_env.scan_iter("rapport*"))


async def test_locks_are_shared_between_instances(redis_env) -> None:
    first, second = EnvLockStore(), EnvLockStore()
    assert isinstance(first, RedisLockStore) and isinstance(second, RedisLockStore)

    conversation = f"it-{uuid.uuid4().hex}"
    order: list[str] = []

    async def second_instance_turn() -> None:
        async with second.lock(conversation, wait_time_in_seconds=0.05):
            order.append("second acquired")

    async with first.lock(conversation):
        order.append("first acquired")
        waiting = asyncio.create_task(second_instance_turn())
        await asyncio.sleep(0.5)
        # The second instance is queued behind the first one's ticket, in Redis.
        assert order == ["first acquired"]
        assert second.is_someone_waiting(conversation)
        order.append("first released")
    await asyncio.wait_for(waiting, timeout=5)
    assert order == ["first acquired", "first released", "second acquired"]


async def test_a_failing_redis_read_fails_the_turn_instead_of_starting_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rasa's FailSafeTrackerStore answers a failed read with "no conversation" (a new,
    split history); with ours installed the failure reaches the channel."""
    from rasa.core.agent import Agent
    from rasa.core.tracker_store import FailSafeTrackerStore

    from bot.stores import install_fail_closed_tracker_store

    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/9")  # nothing listens there
    store = EnvTrackerStore(domain=Domain.empty())
    assert await FailSafeTrackerStore(store).retrieve("someone") is None  # Rasa's: starts over

    monkeypatch.setattr(Agent, "_create_tracker_store", Agent.__dict__["_create_tracker_store"])
    install_fail_closed_tracker_store()
    agent = Agent(domain=Domain.empty(), tracker_store=store)
    assert agent.tracker_store is store
    with pytest.raises(redis.exceptions.ConnectionError):
        await agent.tracker_store.retrieve("someone")


async def test_a_returning_customer_is_stored_as_their_current_session_only(redis_env) -> None:
    """A thousand earlier turns over many sessions are not read, replayed and written
    back on every turn: Redis holds the current session; the CRM transcript the rest."""
    from rasa.shared.core.events import ActionExecuted, BotUttered

    def session(number: int, turns: int) -> list:
        start = float(number * 10_000)
        events: list = [ActionExecuted("action_session_start", timestamp=start)]
        events.append(SessionStarted(timestamp=start + 1))
        for turn in range(turns):
            at = start + 2 + turn * 2
            events.append(UserUttered(f"s{number} t{turn}", {"name": "greet"}, timestamp=at))
            events.append(BotUttered(f"reply {number}.{turn}", timestamp=at + 1))
        return events

    store = EnvTrackerStore(domain=Domain.empty())
    sender = f"it-{uuid.uuid4().hex}"
    history = [event for number in range(10) for event in session(number, 100)]
    await store.save(DialogueStateTracker.from_events(sender, history))
    stored = json.loads(redis_env.get(f"rapport:tracker:{sender}"))
    texts = [event.get("text") for event in stored["events"] if event["event"] == "user"]
    assert texts == [f"s9 t{turn}" for turn in range(100)]  # the current session only

    returning = await store.retrieve(sender)
    assert returning is not None and returning.latest_message.text == "s9 t99"
    # The next session starts: the one before it leaves Redis, the new one stays.
    returning.update_with_events(session(10, 1), domain=None, override_timestamp=False)
    await store.save(returning)
    stored = json.loads(redis_env.get(f"rapport:tracker:{sender}"))
    assert [e.get("text") for e in stored["events"] if e["event"] == "user"] == ["s10 t0"]
