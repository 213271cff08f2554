"""Helpers for action tests: real rasa-sdk Trackers and a real (SQLite) CRM."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.crm import reset_gateway

DOMAIN_FILE = Path(__file__).resolve().parents[2] / "domain.yml"
SESSION_START = 1_700_000_000.0


@pytest.fixture(scope="session")
def domain() -> dict[str, Any]:
    """The real domain.yml as the action server receives it."""
    loaded: dict[str, Any] = yaml.safe_load(DOMAIN_FILE.read_text())
    return loaded


@pytest.fixture
def actions_crm(crm_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point the actions' gateway at the seeded SQLite CRM of this test."""
    monkeypatch.setenv("CRM_DATABASE_URL", crm_url)
    reset_gateway()
    yield crm_url
    reset_gateway()


@pytest.fixture
def dispatcher() -> CollectingDispatcher:
    return CollectingDispatcher()


def make_tracker(
    sender: str = "demo-alice",
    text: str = "hello",
    intent: str = "greet",
    slots: dict[str, Any] | None = None,
    entities: list[dict[str, Any]] | None = None,
    earlier_events: list[dict[str, Any]] | None = None,
    active_loop: str | None = None,
    channel: str = "rest",
    prior_slots: dict[str, Any] | None = None,
) -> Tracker:
    """A tracker as Rasa sends it: session start, earlier events, the latest message.

    ``slots`` are set after the latest message (slot candidates a form validates);
    ``prior_slots`` were set earlier in the conversation.
    """
    latest = {
        "text": text,
        "intent": {"name": intent, "confidence": 0.95},
        "entities": entities or [],
    }
    events = [
        {"event": "action", "timestamp": SESSION_START - 0.01, "name": "action_session_start"},
        {"event": "session_started", "timestamp": SESSION_START},
        {"event": "action", "timestamp": SESSION_START + 0.01, "name": "action_listen"},
        *(earlier_events or []),
        *(
            {"event": "slot", "timestamp": SESSION_START + 1, "name": name, "value": value}
            for name, value in (prior_slots or {}).items()
        ),
        {
            "event": "user",
            "timestamp": time.time(),
            "text": text,
            "parse_data": latest,
            "input_channel": channel,
        },
    ]
    for name, value in (slots or {}).items():
        events.append({"event": "slot", "timestamp": time.time(), "name": name, "value": value})
    return Tracker(
        sender_id=sender,
        slots={**(prior_slots or {}), **(slots or {})},
        latest_message=latest,
        events=events,
        paused=False,
        followup_action=None,
        active_loop={"name": active_loop} if active_loop else {},
        latest_action_name="action_listen",
    )


def texts(dispatcher: CollectingDispatcher) -> list[str]:
    """What the action said: texts, and response names for templated replies."""
    return [m.get("text") or m.get("response") or "" for m in dispatcher.messages]


def slot_events(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The slots an action set, by name (last one wins)."""
    return {e["name"]: e["value"] for e in events if e.get("event") == "slot"}
