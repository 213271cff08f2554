"""Keeps the bot silent while a person owns the conversation.

Ownership lives in the CRM (``crm_bridge.handoff``), which every Rasa instance reads.
While an agent holds the conversation this policy, ranked above every other, answers
each customer message with ``action_relay_to_agent`` and then ``action_listen``: no
other action and no utterance, whatever the customer types (``/restart`` and other
``/intent`` shortcuts included).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from rasa.core.policies.policy import PolicyPrediction
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.shared.core.constants import ACTION_LISTEN_NAME
from rasa.shared.core.domain import Domain
from rasa.shared.core.trackers import DialogueStateTracker

from bot.components.stateless_policy import StatelessPolicy

logger = logging.getLogger(__name__)

RELAY_ACTION = "action_relay_to_agent"
# Above RulePolicy (6) and FlowGuardPolicy (7): a person's ownership overrides every
# rule, story and flow guard.
PRIORITY = 8


@functools.lru_cache(maxsize=1)
def _desk() -> Any:
    from crm_bridge import settings as crm_settings
    from crm_bridge.handoff import HandoffDesk

    return HandoffDesk(crm_settings.database_url())


def agent_owns(sender_id: str) -> bool:
    """Does an agent hold this conversation? (False when the CRM cannot say.)"""
    from crm_bridge.errors import RapportError

    try:
        return bool(_desk().ownership(sender_id).owner == "agent")
    except RapportError as error:
        # Fail open: a customer answered by the bot beats one answered by nobody.
        logger.warning("Cannot read conversation ownership (%s)", type(error).__name__)
        return False


@DefaultV1Recipe.register(
    DefaultV1Recipe.ComponentType.POLICY_WITHOUT_END_TO_END_SUPPORT, is_trainable=True
)
class HandoffPolicy(StatelessPolicy):
    """Relay to the agent, then listen, while an agent owns the conversation."""

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {"priority": PRIORITY}

    def predict_action_probabilities(
        self,
        tracker: DialogueStateTracker,
        domain: Domain,
        rule_only_data: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> PolicyPrediction:
        """Certain relay-then-listen under an agent; no opinion otherwise."""
        probabilities = self._default_predictions(domain)
        if RELAY_ACTION not in domain.action_names_or_texts:
            return self._prediction(probabilities)
        latest = tracker.latest_action_name
        if latest == RELAY_ACTION:
            probabilities[domain.index_for_action(ACTION_LISTEN_NAME)] = 1.0
        elif (
            latest in {ACTION_LISTEN_NAME, "action_extract_slots"}
            and tracker.latest_message
            and agent_owns(tracker.sender_id)
        ):
            probabilities[domain.index_for_action(RELAY_ACTION)] = 1.0
            # Flagged like RulePolicy's "the form goes on" prediction, which would
            # otherwise win inside an active form and let the form answer the customer.
            return self._prediction(probabilities, is_no_user_prediction=True)
        return self._prediction(probabilities)
