"""A dialogue policy with nothing to learn: it decides from the tracker (and the CRM) alone.

Rasa's graph still trains and loads every policy; this base writes a marker file as the
policy's resource and loads by construction, so a subclass only says what it predicts.
"""

from __future__ import annotations

from typing import Any

from rasa.core.policies.policy import Policy
from rasa.engine.graph import ExecutionContext
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.core.domain import Domain
from rasa.shared.core.generator import TrackerWithCachedStates
from typing_extensions import Self


class StatelessPolicy(Policy):
    """Base of HandoffPolicy and FlowGuardPolicy (registered by each subclass)."""

    def train(
        self, training_trackers: list[TrackerWithCachedStates], domain: Domain, **kwargs: Any
    ) -> Resource:
        """Nothing to learn; the marker file only gives the graph a resource to load."""
        with self._model_storage.write_to(self._resource) as directory:
            (directory / f"{type(self).__name__}.txt").write_text("stateless\n")
        return self._resource

    @classmethod
    def load(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        **kwargs: Any,
    ) -> Self:
        """The policy as configured (there is nothing stored to read)."""
        return cls(config, model_storage, resource, execution_context)
