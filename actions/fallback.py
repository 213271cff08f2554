"""Messages the assistant did not understand: ask to rephrase, then offer a person."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import UserUtteranceReverted
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

FALLBACK_INTENT = "nlu_fallback"
MISSES_BEFORE_OFFERING_A_HUMAN = 2


def consecutive_misses(tracker: Tracker) -> int:
    """How many of the customer's latest messages in a row were not understood.

    Reads the raw event list, so messages already reverted by this action still count.
    """
    misses = 0
    for event in reversed(tracker.events):
        if event.get("event") != "user":
            continue
        intent = ((event.get("parse_data") or {}).get("intent") or {}).get("name")
        if intent != FALLBACK_INTENT:
            break
        misses += 1
    return misses


class ActionHandleFallback(Action):
    """Ask to rephrase; on the second miss in a row, offer a person (buttons)."""

    def name(self) -> str:
        return "action_handle_fallback"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[dict[str, Any]]:
        if consecutive_misses(tracker) >= MISSES_BEFORE_OFFERING_A_HUMAN:
            dispatcher.utter_message(response="utter_offer_human")
        else:
            dispatcher.utter_message(response="utter_ask_rephrase")
        # Forget the message so an unfinished form or flow carries on where it was.
        return [UserUtteranceReverted()]
