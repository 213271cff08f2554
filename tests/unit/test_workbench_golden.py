"""Golden conversations: tracker events become a Rasa test story; stories are kept as
validated files; a golden story passes on a good model and fails on a broken one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from rasa.core.tracker_store import InMemoryTrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, ActiveLoop, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.core.training_data.story_reader.yaml_story_reader import YAMLStoryReader

from bot.settings import PROJECT_ROOT
from bot.workbench.golden import (
    GoldenRunError,
    delete_golden,
    list_golden,
    load_golden,
    run_golden,
    save_golden,
    story_from_conversation,
    story_from_tracker_events,
)
from crm_bridge.db import session_factory, unit_of_work
from crm_bridge.errors import Conflict, InvalidInput, NotFound
from crm_bridge.masking import Masker
from crm_bridge.sql_gateway import get_or_create_interaction

T = 1_700_000_000.0


def user(ts: float, text: str, intent: str, entities: list[dict[str, Any]] | None = None) -> dict:
    """A ``user`` event as Rasa stores it."""
    parse = {
        "intent": {"name": intent, "confidence": 0.93},
        "entities": entities or [],
        "text": text,
    }
    return {
        "event": "user",
        "timestamp": ts,
        "text": text,
        "parse_data": parse,
        "input_channel": "rest",
    }


def action(ts: float, name: str) -> dict:
    return {
        "event": "action",
        "timestamp": ts,
        "name": name,
        "policy": "RulePolicy",
        "confidence": 1.0,
    }


def slot(ts: float, name: str, value: Any) -> dict:
    return {"event": "slot", "timestamp": ts, "name": name, "value": value}


def session_start(ts: float) -> list[dict]:
    return [
        action(ts - 0.01, "action_session_start"),
        {"event": "session_started", "timestamp": ts},
        slot(ts, "session_started_metadata", {"channel": "rest"}),
        action(ts + 0.01, "action_listen"),
    ]


ORDER_TEXT = "where is my order 10001? I'm Alice Martin, alice@example.com"
ORDER_ENTITIES = [
    {"entity": "order_number", "start": 18, "end": 23, "value": "10001", "extractor": "Regex"},
    {"entity": "email", "start": 43, "end": 60, "value": "alice@example.com", "extractor": "Regex"},
]


def conversation_events() -> list[dict]:
    """Two sessions: an old one, then greeting, an order-status form, a reverted
    misunderstanding, a button shortcut and goodbye; then a third session."""
    assert ORDER_TEXT[18:23] == "10001" and ORDER_TEXT[43:60] == "alice@example.com"
    return [
        *session_start(T - 5000),
        user(T - 4990, "an older session", "greet"),
        action(T - 4989, "utter_greet"),
        *session_start(T),
        user(T + 1, "hello there", "greet"),
        {"event": "user_featurization", "timestamp": T + 1, "use_text_for_featurization": True},
        action(T + 2, "utter_greet"),
        {"event": "bot", "timestamp": T + 2, "text": "Hi Alice!", "data": {}, "metadata": {}},
        action(T + 3, "action_listen"),
        user(T + 4, ORDER_TEXT, "order_status", ORDER_ENTITIES),
        slot(T + 4, "order_number", "10001"),
        action(T + 5, "order_status_form"),
        {"event": "active_loop", "timestamp": T + 5, "name": "order_status_form"},
        slot(T + 5, "email", "alice@example.com"),
        slot(T + 5, "requested_slot", None),
        {"event": "active_loop", "timestamp": T + 5, "name": None},
        action(T + 6, "action_check_order_status"),
        slot(T + 6, "order_status", "shipped"),
        action(T + 7, "action_listen"),
        user(T + 8, "blargh", "nlu_fallback"),
        {"event": "rewind", "timestamp": T + 9},
        user(
            T + 10,
            '/inform{"order_number": "10002"}',
            "inform",
            [{"entity": "order_number", "value": "10002"}],
        ),
        action(T + 11, "utter_anything_else"),
        action(T + 12, "action_listen"),
        user(T + 13, "bye", "goodbye"),
        action(T + 14, "utter_goodbye"),
        action(T + 15, "action_listen"),
        *session_start(T + 9000),
        user(T + 9001, "a later session", "greet"),
    ]


def story_events(story_yaml: str) -> list[Any]:
    """The events of the one story in ``story_yaml``, as Rasa's test reader sees them."""
    steps = YAMLStoryReader(source_name="test_golden.yml").read_from_string(story_yaml)
    assert len(steps) == 1
    return list(steps[0].events)


def test_a_session_becomes_a_test_story_with_its_steps() -> None:
    story = story_from_tracker_events(conversation_events(), T, "conversation-7")

    data = yaml.safe_load(story)
    assert data["version"] == "3.1"
    [entry] = data["stories"]
    assert entry["story"] == "conversation-7"
    steps = entry["steps"]
    assert steps[0] == {"user": "hello there", "intent": "greet"}
    assert list(steps[2]) == ["user", "intent"]  # the customer's words first, as people write
    assert steps[2]["user"] == (
        "where is my order [10001](order_number)? I'm Alice Martin, [alice@example.com](email)"
    )
    # The button shortcut is the intent (with its entity) and no text.
    assert {"intent": "inform", "entities": [{"order_number": "10002"}]} in steps

    events = story_events(story)
    kinds = [
        (type(e).__name__, getattr(e, "intent_name", None) or getattr(e, "action_name", None))
        for e in events
        if isinstance(e, (UserUttered, ActionExecuted))
    ]
    assert kinds == [
        ("UserUttered", "greet"),
        ("ActionExecuted", "utter_greet"),
        ("UserUttered", "order_status"),
        ("ActionExecuted", "order_status_form"),
        ("ActionExecuted", "action_check_order_status"),
        ("UserUttered", "inform"),
        ("ActionExecuted", "utter_anything_else"),
        ("UserUttered", "goodbye"),
        ("ActionExecuted", "utter_goodbye"),
    ]
    slots = [(e.key, e.value) for e in events if isinstance(e, SlotSet)]
    assert slots == [
        ("order_number", "10001"),
        ("email", "alice@example.com"),
        ("requested_slot", None),
        ("order_status", "shipped"),
    ]
    loops = [e.name for e in events if isinstance(e, ActiveLoop)]
    assert loops == ["order_status_form", None]
    [order] = [e for e in events if isinstance(e, UserUttered) and e.intent_name == "order_status"]
    assert {(x["entity"], x["value"]) for x in order.entities} == {
        ("order_number", "10001"),
        ("email", "alice@example.com"),
    }
    # Neither the other sessions, the reverted turn nor the bot's words are in it.
    for absent in (
        "older session",
        "later session",
        "blargh",
        "Hi Alice",
        "session_started_metadata",
    ):
        assert absent not in story


def test_masking_replaces_personal_data_in_text_entities_and_slots() -> None:
    masker = Masker(["Alice Martin"])
    story = story_from_tracker_events(conversation_events(), T, "conversation-7", masker=masker)

    for personal in ("10001", "10002", "alice@example.com", "Alice", "Martin"):
        assert personal not in story
    steps = yaml.safe_load(story)["stories"][0]["steps"]
    assert steps[2]["user"] == (
        "where is my order [12345](order_number)? I'm Alex, [customer@example.com](email)"
    )
    events = story_events(story)
    [order] = [e for e in events if isinstance(e, UserUttered) and e.intent_name == "order_status"]
    assert sorted((x["entity"], x["value"]) for x in order.entities) == [
        ("email", "customer@example.com"),
        ("order_number", "12345"),
    ]
    # The entity annotation is where the stand-in is, so NLU can predict it there.
    assert order.text[order.entities[0]["start"] : order.entities[0]["end"]] in {
        "12345",
        "customer@example.com",
    }
    slots = dict((e.key, e.value) for e in events if isinstance(e, SlotSet))
    assert slots["order_number"] == "12345" and slots["email"] == "customer@example.com"
    assert slots["order_status"] == "shipped"


def test_customer_brackets_are_not_read_as_annotations() -> None:
    events = [
        *session_start(T),
        user(T + 1, "hi [there](friend)", "greet"),
        action(T + 2, "utter_greet"),
    ]
    story = story_from_tracker_events(events, T, "brackets")
    [said] = [e for e in story_events(story) if isinstance(e, UserUttered)]
    assert said.entities == []
    assert said.text == "hi (there)(friend)"


def test_a_session_without_customer_messages_is_refused() -> None:
    with pytest.raises(InvalidInput):
        story_from_tracker_events(session_start(T), T, "empty")


async def test_story_from_a_crm_conversation(crm_url: str) -> None:
    factory = session_factory(crm_url)
    with unit_of_work(factory) as session:
        interaction_id = get_or_create_interaction(session, "demo-alice", T, channel="rest").id
    store = InMemoryTrackerStore(Domain.empty())
    await store.save(DialogueStateTracker.from_dict("demo-alice", conversation_events()))

    story = await story_from_conversation(interaction_id, factory, store)

    [entry] = yaml.safe_load(story)["stories"]
    assert entry["story"] == f"conversation-{interaction_id}"
    assert entry["steps"][0] == {"user": "hello there", "intent": "greet"}
    # Masked by default, with the CRM's customer names.
    assert "Alice" not in story and "alice@example.com" not in story and "10001" not in story
    unmasked = await story_from_conversation(interaction_id, factory, store, mask=False)
    assert "alice@example.com" in unmasked

    with pytest.raises(NotFound):
        await story_from_conversation(interaction_id + 1000, factory, store)
    with unit_of_work(factory) as session:
        gone = get_or_create_interaction(session, "nobody", T).id
    with pytest.raises(NotFound):
        await story_from_conversation(gone, factory, store)


GREETING_STORY = """version: "3.1"
stories:
  - story: greeting and goodbye
    steps:
      - user: |
          hello there
        intent: greet
      - action: utter_greet
      - user: |
          bye
        intent: goodbye
      - action: utter_goodbye
"""


def test_golden_stories_round_trip(tmp_path: Path) -> None:
    golden = tmp_path / "golden"
    assert list_golden(golden) == []

    path = save_golden(golden, "greeting", GREETING_STORY)
    generated = story_from_tracker_events(conversation_events(), T, "conversation-7")
    save_golden(golden, "conversation-7", generated)

    assert path == golden / "greeting.yml"
    assert list_golden(golden) == ["conversation-7", "greeting"]
    assert load_golden(golden, "greeting") == GREETING_STORY
    assert load_golden(golden, "conversation-7") == generated
    assert not [p for p in golden.iterdir() if p.name.startswith(".")]  # no temporary left

    with pytest.raises(Conflict):
        save_golden(golden, "greeting", generated)
    assert load_golden(golden, "greeting") == GREETING_STORY
    save_golden(golden, "greeting", generated, overwrite=True)
    assert load_golden(golden, "greeting") == generated

    delete_golden(golden, "greeting")
    assert list_golden(golden) == ["conversation-7"]
    with pytest.raises(NotFound):
        delete_golden(golden, "greeting")
    with pytest.raises(NotFound):
        load_golden(golden, "greeting")


@pytest.mark.parametrize(
    "name", ["", "Greeting", "-greeting", "greet_ing", "../etc", "a" * 62, "greeting.yml"]
)
def test_invalid_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        save_golden(tmp_path, name, GREETING_STORY)
    assert refused.value.field == "name"
    with pytest.raises(InvalidInput):
        delete_golden(tmp_path, name)
    assert list(tmp_path.iterdir()) == []


TWO_STORIES = (
    GREETING_STORY
    + """  - story: another
    steps:
      - intent: greet
      - action: utter_greet
"""
)


@pytest.mark.parametrize(
    "story",
    [
        "stories: [unclosed",  # not YAML
        "version: '3.1'\nstories:\n  - story: x\n    steps: 5\n",  # not the schema
        "version: '3.1'\nstories:\n  - story: x\n    steps:\n      - nonsense: 1\n",
        "version: '3.1'\nstories: []\n",  # no story
        TWO_STORIES,
        GREETING_STORY
        + "rules:\n  - rule: r\n    steps:\n      - intent: greet\n      - action: utter_greet\n",
        "version: '3.1'\nnlu:\n  - intent: greet\n    examples: |\n      - hi\n",
    ],
)
def test_invalid_stories_are_refused(tmp_path: Path, story: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        save_golden(tmp_path, "bad", story)
    assert refused.value.field == "story"
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- tiny models

TINY_CONFIG = """recipe: default.v1
language: en
assistant_id: tiny-golden
pipeline:
  - name: WhitespaceTokenizer
  - name: CountVectorsFeaturizer
  - name: LogisticRegressionClassifier
policies:
  - name: MemoizationPolicy
  - name: RulePolicy
"""


def write_tiny_project(root: Path, greet_response: str) -> Path:
    """A two-intent assistant from the project's own greet/goodbye examples and replies;
    ``greet_response`` is what its rule answers a greeting with."""
    nlu = yaml.safe_load((PROJECT_ROOT / "data" / "nlu" / "basics.yml").read_text())
    examples = {item["intent"]: item["examples"] for item in nlu["nlu"] if "intent" in item}
    domain = yaml.safe_load((PROJECT_ROOT / "domain.yml").read_text())
    responses = {name: domain["responses"][name] for name in ("utter_greet", "utter_goodbye")}
    responses["utter_greet"] = [{"text": responses["utter_greet"][0]["text"]}]
    responses["utter_goodbye_again"] = [{"text": "Bye again."}]
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "config.yml").write_text(TINY_CONFIG)
    tiny_domain = {
        "version": "3.1",
        "intents": ["greet", "goodbye"],
        "responses": responses,
        "session_config": {"session_expiration_time": 60, "carry_over_slots_to_new_session": False},
    }
    (root / "domain.yml").write_text(yaml.safe_dump(tiny_domain))
    nlu_data = {
        "version": "3.1",
        "nlu": [{"intent": name, "examples": examples[name]} for name in ("greet", "goodbye")],
    }
    (root / "data" / "nlu.yml").write_text(yaml.safe_dump(nlu_data))
    rules = {
        "version": "3.1",
        "rules": [
            {"rule": "greet", "steps": [{"intent": "greet"}, {"action": greet_response}]},
            {"rule": "goodbye", "steps": [{"intent": "goodbye"}, {"action": "utter_goodbye"}]},
        ],
    }
    (root / "data" / "rules.yml").write_text(yaml.safe_dump(rules))
    return root


def train_tiny_models(base: Path) -> dict[str, Path]:
    """``good`` (greet → utter_greet) and ``broken`` (greet → utter_goodbye_again) tiny
    models in ``base/models``, trained in parallel once per test session (~25 s)."""
    models = base / "models"
    wanted = {"good": "utter_greet", "broken": "utter_goodbye_again"}
    paths = {kind: models / f"tiny-{kind}.tar.gz" for kind in wanted}
    if all(path.exists() for path in paths.values()):
        return paths
    env = {**os.environ, "RASA_TELEMETRY_ENABLED": "false"}
    processes = []
    for kind, response in wanted.items():
        project = write_tiny_project(base / kind, response)
        command = [
            sys.executable, "-m", "rasa", "train",
            "--config", "config.yml", "--domain", "domain.yml", "--data", "data",
            "--out", str(models), "--fixed-model-name", f"tiny-{kind}",
        ]  # fmt: skip
        log = (base / f"train-{kind}.log").open("w")
        processes.append(
            (
                kind,
                subprocess.Popen(
                    command, cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT
                ),
            )
        )
    for kind, process in processes:
        assert process.wait(300) == 0, (base / f"train-{kind}.log").read_text()[-3000:]
    return paths


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return train_tiny_models(tmp_path_factory.getbasetemp() / "tiny-models")


def test_a_golden_story_passes_on_a_good_model_and_fails_on_a_broken_one(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    golden = tmp_path / "golden"
    events = [
        *session_start(T),
        user(T + 1, "hello there", "greet"),
        action(T + 2, "utter_greet"),
        action(T + 3, "action_listen"),
        user(T + 4, "/goodbye", "goodbye"),
        action(T + 5, "utter_goodbye"),
    ]
    save_golden(golden, "greeting", story_from_tracker_events(events, T, "conversation-1"))

    good = run_golden(tiny_models["good"], golden, tmp_path)
    assert (good.passed, good.failures) == (["greeting"], [])

    (golden / "stale.yml").write_text("version: '3.1'\nstories: []\n")  # edited by hand
    broken = run_golden(tiny_models["broken"], golden, tmp_path)
    assert broken.passed == []
    assert broken.failures == ["greeting", "stale"]
    assert "predicted: utter_goodbye_again" in broken.details
    assert "stale:" in broken.details


def test_no_golden_stories_no_run(tmp_path: Path) -> None:
    result = run_golden(tmp_path / "missing.tar.gz", tmp_path / "golden", tmp_path)
    assert (result.passed, result.failures) == ([], [])


def test_a_run_that_cannot_load_the_model_is_an_error(tmp_path: Path) -> None:
    save_golden(tmp_path / "golden", "greeting", GREETING_STORY)
    with pytest.raises(GoldenRunError):
        run_golden(tmp_path / "missing.tar.gz", tmp_path / "golden", tmp_path)
