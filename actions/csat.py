"""The customer's 1–5 rating after an agent handed the conversation back."""

from __future__ import annotations

import re
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.crm import get_handoff_service
from actions.handoff import tell_crm_failure
from bot.csat import CSAT_BUTTONS
from crm_bridge.errors import RapportError

SCORE = re.compile(r"(?<!\d)([1-5])(?!\d)")


def score_of(tracker: Tracker) -> int | None:
    """The rating from the pressed button, or the first digit 1–5 the customer typed."""
    for entity in tracker.latest_message.get("entities") or []:
        if entity.get("entity") == "csat_score" and str(entity.get("value")).isdigit():
            value = int(entity["value"])
            return value if 1 <= value <= 5 else None
    match = SCORE.search(tracker.latest_message.get("text") or "")
    return int(match.group(1)) if match else None


class ActionStoreCsat(Action):
    """Store the rating on the last handed-back handoff and its Interaction."""

    def name(self) -> str:
        return "action_store_csat"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[dict[str, Any]]:
        score = score_of(tracker)
        if score is None:
            dispatcher.utter_message(text="Please pick a score from 1 to 5.", buttons=CSAT_BUTTONS)
            return []
        try:
            get_handoff_service().record_rating(tracker.sender_id, score)
        except RapportError as error:
            tell_crm_failure(dispatcher, error)
            return []
        dispatcher.utter_message(text="Thank you for your feedback! Anything else I can help with?")
        return []
