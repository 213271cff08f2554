"""Messages the assistant did not understand: ask to rephrase; on the second miss in a
row, hand the conversation to a person."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import UserUtteranceReverted
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.handoff import start_handoff
from crm_bridge.errors import RapportError
from crm_bridge.handoff import HandoffReason

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
    """Ask to rephrase; on the second miss in a row, queue a handoff to a person."""

    def name(self) -> str:
        return "action_handle_fallback"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[dict[str, Any]]:
        if consecutive_misses(tracker) >= MISSES_BEFORE_OFFERING_A_HUMAN:
            try:
                start_handoff(
                    dispatcher,
                    tracker,
                    HandoffReason.REPEATED_FALLBACK,
                    intro="Sorry, I'm still not sure what you need. ",
                )
            except RapportError:
                # No queue to put them in: let them choose (the button retries the handoff).
                dispatcher.utter_message(response="utter_offer_human")
        else:
            dispatcher.utter_message(response="utter_ask_rephrase")
        # Forget the message so an unfinished form or flow carries on where it was.
        return [UserUtteranceReverted()]
