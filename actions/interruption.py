"""A message inside a form that answered nothing: reply to it; the FlowGuard policy then
runs the form again, which re-asks its question. "Goodbye" ends the form instead."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.inbound import reply_too_long
from actions.other_language import reply_other_language
from actions.switch_flow import leave_form_events
from bot.flows import ANSWER_INTERRUPTION_ACTION, FLOW_FORMS, FLOW_LABELS, ORDER_SLOTS

# Intent -> reply, for the intents that have a short answer of their own in a form.
REPLIES: dict[str, dict[str, str]] = {
    "greet": dict(response="utter_greet_in_flow"),
    "thank": dict(response="utter_welcome_in_flow"),
    "bot_challenge": dict(response="utter_iamabot"),
    "out_of_scope": dict(response="utter_out_of_scope_in_flow"),
    "inbound_unclear": dict(response="utter_inbound_unclear"),
}
# Anything else (affirm, deny, inform that filled nothing, a rating ...).
NOT_AN_ANSWER = dict(response="utter_need_answer")


def offer_flow(dispatcher: CollectingDispatcher, intent: str) -> None:
    """Offer another flow (asked for without enough confidence to switch at once)."""
    label = FLOW_LABELS[intent]
    dispatcher.utter_message(
        text=f"Would you rather {label}? Tap below, or answer my question to carry on.",
        buttons=[{"title": label[0].upper() + label[1:], "payload": f"/{intent}"}],
    )


class ActionAnswerInterruption(Action):
    def name(self) -> str:
        return ANSWER_INTERRUPTION_ACTION

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[dict[str, Any]]:
        form = tracker.active_loop.get("name")
        intent = (tracker.latest_message.get("intent") or {}).get("name") or ""
        if intent == "goodbye":
            dispatcher.utter_message(response="utter_goodbye")
            return [*leave_form_events(form), *(SlotSet(slot, None) for slot in ORDER_SLOTS)]
        if intent in FLOW_FORMS and FLOW_FORMS[intent] == form:
            dispatcher.utter_message(response="utter_on_it")
        elif intent in FLOW_FORMS:
            offer_flow(dispatcher, intent)
        elif intent == "inbound_too_long":
            reply_too_long(dispatcher, tracker)
        elif intent == "inbound_other_language":
            reply_other_language(dispatcher, tracker)
        else:
            dispatcher.utter_message(**REPLIES.get(intent, NOT_AN_ANSWER))
        return []
