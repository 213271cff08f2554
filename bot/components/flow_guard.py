"""Keeps forms honest: interruptions are answered, a new request switches flows, and a
flow that ended is not asked again.

A deterministic, stateless policy ranked above RulePolicy (6) and below HandoffPolicy
(8). It has an opinion only in these situations, and then it is certain:

* a form is active and the customer's message is another flow's request (its trigger
  intent with confidence >= ``switch_confidence``): ``action_switch_flow``, then that
  flow's form. It overrules the form's own "happy path", so the message is never taken
  as the old form's answer;
* the active form rejected the message (it filled nothing) and no in-form rule covers
  the intent (stop, request_human, faq, nlu_fallback have rules): answer it with
  ``action_answer_interruption``, then run the form again (it re-asks its question), or
  listen when the answer ended the form (goodbye);
* a form just finished (or was ended early by its validation): its submit action, then
  listen; so nothing learned (TED, memoization) re-opens a flow that ended;
* after the core fallback action: the form again when one is active, else listen.

The flow table lives in ``bot.flows`` (shared with the actions).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from rasa.core.policies.policy import PolicyPrediction
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.shared.core.constants import ACTION_LISTEN_NAME, REQUESTED_SLOT
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecutionRejected
from rasa.shared.core.trackers import DialogueStateTracker

from bot.components import handoff_policy
from bot.components.stateless_policy import StatelessPolicy
from bot.flows import (
    ANSWER_INTERRUPTION_ACTION,
    FLOW_FORMS,
    FORM_SUBMIT_ACTIONS,
    RULE_INTENTS,
    SWITCH_FLOW_ACTION,
    switches_flow,
)

logger = logging.getLogger(__name__)

# Above RulePolicy (6), below HandoffPolicy (8): a person's ownership still wins.
PRIORITY = 7
DEFAULT_SWITCH_CONFIDENCE = 0.8
CORE_FALLBACK_ACTION = "action_core_fallback"
AFTER_USER_MESSAGE = frozenset({ACTION_LISTEN_NAME, "action_extract_slots"})


@DefaultV1Recipe.register(
    DefaultV1Recipe.ComponentType.POLICY_WITHOUT_END_TO_END_SUPPORT, is_trainable=True
)
class FlowGuardPolicy(StatelessPolicy):
    """Switch flows, answer interruptions, finish ended flows (see the module doc)."""

    #: Does an agent hold this conversation? (Replaced in tests by a real CRM reader.)
    agent_owns: Callable[[str], bool] = staticmethod(handoff_policy.agent_owns)

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {"priority": PRIORITY, "switch_confidence": DEFAULT_SWITCH_CONFIDENCE}

    def predict_action_probabilities(
        self,
        tracker: DialogueStateTracker,
        domain: Domain,
        rule_only_data: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> PolicyPrediction:
        """A certain prediction in the situations of the module doc; no opinion otherwise."""
        action, overrules_loop = self.next_action(tracker)
        probabilities = self._default_predictions(domain)
        if action is None or action not in domain.action_names_or_texts:
            return self._prediction(probabilities)
        logger.debug("FlowGuard predicts %s", action)
        probabilities[domain.index_for_action(action)] = 1.0
        return self._prediction(probabilities, is_no_user_prediction=overrules_loop)

    def next_action(self, tracker: DialogueStateTracker) -> tuple[str | None, bool]:
        """``(action or None, overrules the form's happy path)`` for this tracker."""
        form = tracker.active_loop_name
        latest = tracker.latest_action_name
        intent = tracker.latest_message.intent if tracker.latest_message else {}
        intent_name = intent.get("name")
        last_event = tracker.events[-1] if tracker.events else None

        if isinstance(last_event, ActionExecutionRejected):
            if form and last_event.action_name == form and intent_name not in RULE_INTENTS:
                return ANSWER_INTERRUPTION_ACTION, False
            return None, False
        if latest in AFTER_USER_MESSAGE:
            if (
                form
                and switches_flow(intent_name, form, tracker.get_slot(REQUESTED_SLOT))
                and float(intent.get("confidence") or 0.0) >= self.config["switch_confidence"]
                and not self.agent_owns(tracker.sender_id)
            ):
                return SWITCH_FLOW_ACTION, True
            return None, False
        if latest == SWITCH_FLOW_ACTION:
            return FLOW_FORMS.get(intent_name or ""), False
        if latest in {ANSWER_INTERRUPTION_ACTION, CORE_FALLBACK_ACTION}:
            return form or ACTION_LISTEN_NAME, False
        if latest in FORM_SUBMIT_ACTIONS and form is None:
            return FORM_SUBMIT_ACTIONS[latest], False
        if latest in FORM_SUBMIT_ACTIONS.values():
            return ACTION_LISTEN_NAME, False
        return None, False
