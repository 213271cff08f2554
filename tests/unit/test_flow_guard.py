"""FlowGuardPolicy on real Rasa trackers and the real domain.yml."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.shared.core.constants import ACTION_LISTEN_NAME
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import (
    ActionExecuted,
    ActionExecutionRejected,
    ActiveLoop,
    Event,
    SlotSet,
    UserUttered,
)
from rasa.shared.core.trackers import DialogueStateTracker

from bot.components import handoff_policy
from bot.components.flow_guard import FlowGuardPolicy
from bot.flows import (
    FLOW_FORMS,
    FORM_INTENTS,
    FORM_SUBMIT_ACTIONS,
    INBOUND_INTENTS,
    NARRATIVE_INTENTS,
    NOT_AN_ANSWER_INTENTS,
)
from tests.unit.conftest import DOMAIN_FILE

CONFIG_FILE = DOMAIN_FILE.parent / "config.yml"


@pytest.fixture(scope="module")
def rasa_domain() -> Domain:
    return Domain.load(str(DOMAIN_FILE))


@pytest.fixture
def guard(tmp_path: Path, crm_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The policy as config.yml configures it, reading ownership from a seeded CRM."""
    monkeypatch.setenv("CRM_DATABASE_URL", crm_url)
    handoff_policy._desk.cache_clear()
    config = yaml.safe_load(CONFIG_FILE.read_text())
    [entry] = [p for p in config["policies"] if p["name"].endswith("FlowGuardPolicy")]
    settings = {k: v for k, v in entry.items() if k != "name"}
    yield FlowGuardPolicy.create(
        {**FlowGuardPolicy.get_default_config(), **settings},
        LocalModelStorage(tmp_path),
        Resource("flow_guard"),
        ExecutionContext(GraphSchema({}), "test"),
    )
    handoff_policy._desk.cache_clear()


def user(intent: str, confidence: float = 0.95, text: str = "...") -> UserUttered:
    return UserUttered(text, {"name": intent, "confidence": confidence})


def in_form(form: str, requested: str, *events: Event, sender: str = "u1") -> DialogueStateTracker:
    """A conversation waiting in ``form`` for ``requested``, then ``events``."""
    history: list[Event] = [
        ActionExecuted(ACTION_LISTEN_NAME),
        user(FORM_INTENTS[form], 1.0),
        ActionExecuted(form),
        ActiveLoop(form),
        SlotSet("requested_slot", requested),
        ActionExecuted(ACTION_LISTEN_NAME),
        *events,
    ]
    return DialogueStateTracker.from_events(sender, history)


def predicted(guard: Any, tracker: DialogueStateTracker, domain: Domain) -> str | None:
    prediction = guard.predict_action_probabilities(tracker, domain)
    if max(prediction.probabilities) == 0:
        return None
    return domain.action_names_or_texts[prediction.max_confidence_index]


def test_the_guard_ranks_between_rules_and_the_handoff_policy(guard: Any) -> None:
    assert 6 < guard.priority < handoff_policy.PRIORITY
    assert guard.config["switch_confidence"] == 0.8


@pytest.mark.parametrize("form", sorted(FORM_INTENTS))
def test_another_flows_request_switches_flows_then_starts_its_form(
    guard: Any, rasa_domain: Domain, form: str
) -> None:
    for intent, target in FLOW_FORMS.items():
        if target == form:
            continue
        tracker = in_form(form, "order_number", user(intent, 0.9))
        prediction = guard.predict_action_probabilities(tracker, rasa_domain)
        assert predicted(guard, tracker, rasa_domain) == "action_switch_flow", intent
        # It overrules the form's own happy path (RulePolicy's loop prediction).
        assert prediction.is_no_user_prediction
        tracker.update(ActionExecuted("action_switch_flow"))
        tracker.update(ActiveLoop(None))
        assert predicted(guard, tracker, rasa_domain) == target


def test_no_switch_below_the_threshold_for_the_own_flow_or_outside_forms(
    guard: Any, rasa_domain: Domain
) -> None:
    unsure = in_form("order_status_form", "email", user("update_contact", 0.79))
    assert predicted(guard, unsure, rasa_domain) is None
    own = in_form("order_status_form", "email", user("order_status", 1.0))
    assert predicted(guard, own, rasa_domain) is None
    outside = DialogueStateTracker.from_events(
        "u1", [ActionExecuted(ACTION_LISTEN_NAME), user("cancel_order", 1.0)]
    )
    assert predicted(guard, outside, rasa_domain) is None


def test_a_free_text_answer_that_reads_like_a_complaint_is_an_answer(
    guard: Any, rasa_domain: Domain
) -> None:
    for slot, form in (("return_reason", "return_form"), ("complaint_text", "complaint_form")):
        for intent in NARRATIVE_INTENTS[slot]:
            tracker = in_form(form, slot, user(intent, 0.99))
            assert predicted(guard, tracker, rasa_domain) is None
    asked_item = in_form("return_form", "return_item", user("complaint", 0.99))
    assert predicted(guard, asked_item, rasa_domain) == "action_switch_flow"


def test_no_switch_while_an_agent_owns_the_conversation(
    guard: Any, rasa_domain: Domain, crm_url: str
) -> None:
    from crm_bridge.gateway import ConversationRef
    from crm_bridge.handoff import HandoffDesk, HandoffReason

    desk = HandoffDesk(crm_url)
    handoff = desk.request(
        ConversationRef("owned", "rest", time.time()), HandoffReason.CUSTOMER_REQUEST
    )
    desk.claim(handoff.id, "U1", "Dana")
    tracker = in_form("order_status_form", "email", user("cancel_order", 1.0), sender="owned")
    assert predicted(guard, tracker, rasa_domain) is None


@pytest.mark.parametrize(
    "intent",
    [
        "greet",
        "thank",
        "bot_challenge",
        "goodbye",
        "out_of_scope",
        "affirm",
        "deny",
        "inform",
        "csat",
        "order_status",
        "cancel_order",
        *INBOUND_INTENTS,
    ],
)
def test_a_rejected_form_answers_the_interruption_then_asks_again(
    guard: Any, rasa_domain: Domain, intent: str
) -> None:
    tracker = in_form(
        "order_status_form",
        "email",
        user(intent, 0.5),
        ActionExecuted("action_extract_slots"),
        ActionExecutionRejected("order_status_form"),
    )
    assert predicted(guard, tracker, rasa_domain) == "action_answer_interruption"
    tracker.update(ActionExecuted("action_answer_interruption"))
    assert predicted(guard, tracker, rasa_domain) == "order_status_form"
    tracker.update(ActiveLoop(None))  # the answer ended the form (goodbye)
    assert predicted(guard, tracker, rasa_domain) == ACTION_LISTEN_NAME


@pytest.mark.parametrize("intent", ["stop", "request_human", "faq", "nlu_fallback"])
def test_intents_with_in_form_rules_are_left_to_the_rules(
    guard: Any, rasa_domain: Domain, intent: str
) -> None:
    tracker = in_form(
        "return_form",
        "order_number",
        user(intent, 0.9),
        ActionExecutionRejected("return_form"),
    )
    assert predicted(guard, tracker, rasa_domain) is None


@pytest.mark.parametrize("form", sorted(FORM_SUBMIT_ACTIONS))
def test_a_finished_form_is_submitted_then_the_bot_listens(
    guard: Any, rasa_domain: Domain, form: str
) -> None:
    tracker = in_form(form, "order_number", user("inform"), ActionExecuted(form), ActiveLoop(None))
    assert predicted(guard, tracker, rasa_domain) == FORM_SUBMIT_ACTIONS[form]
    tracker.update(ActionExecuted(FORM_SUBMIT_ACTIONS[form]))
    assert predicted(guard, tracker, rasa_domain) == ACTION_LISTEN_NAME
    still_asking = in_form(form, "order_number", user("inform"), ActionExecuted(form))
    assert predicted(guard, still_asking, rasa_domain) is None  # RulePolicy listens


def test_after_the_core_fallback_the_form_asks_again_or_the_bot_listens(
    guard: Any, rasa_domain: Domain
) -> None:
    tracker = in_form("complaint_form", "complaint_text", user("inform"))
    tracker.update(ActionExecuted("action_core_fallback"))
    assert predicted(guard, tracker, rasa_domain) == "complaint_form"
    outside = DialogueStateTracker.from_events(
        "u1", [user("inform"), ActionExecuted("action_core_fallback")]
    )
    assert predicted(guard, outside, rasa_domain) == ACTION_LISTEN_NAME


def test_slot_mappings_never_take_another_flows_request_as_an_answer() -> None:
    """domain.yml's not_intent lists agree with bot/flows.py."""
    domain = yaml.safe_load(DOMAIN_FILE.read_text())
    checked = 0
    for slot, spec in domain["slots"].items():
        for mapping in spec.get("mappings", []):
            forms = {c["active_loop"] for c in mapping.get("conditions", [])}
            if mapping["type"] not in {"from_entity", "from_text"} or not forms:
                continue
            for form in forms:  # a slot shared by several forms excludes what each needs
                narrative = NARRATIVE_INTENTS.get(slot, frozenset())
                expected = {i for i in FLOW_FORMS if FLOW_FORMS[i] != form} - narrative
                expected |= set(INBOUND_INTENTS)
                if mapping["type"] == "from_text":
                    expected |= NOT_AN_ANSWER_INTENTS
                assert expected <= set(mapping.get("not_intent", [])), (slot, form)
                checked += 1
    assert checked >= 10
