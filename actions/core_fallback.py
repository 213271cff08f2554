"""The dialogue policies were unsure what to do next: never leave the customer without
a reply (RulePolicy's ``core_fallback_action_name``)."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict


def replied_since_last_message(tracker: Tracker) -> bool:
    """Has the bot already said something since the customer's latest message?"""
    for event in reversed(tracker.events):
        if event.get("event") == "user":
            return False
        if event.get("event") == "bot":
            return True
    return False


class ActionCoreFallback(Action):
    """Ask to rephrase, unless the customer already got an answer this turn. The
    FlowGuard policy then resumes an active form (re-asking its question) or listens."""

    def name(self) -> str:
        return "action_core_fallback"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[dict[str, Any]]:
        if not replied_since_last_message(tracker):
            dispatcher.utter_message(response="utter_ask_rephrase")
        return []
