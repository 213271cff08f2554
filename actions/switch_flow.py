"""Leave the active form for the flow the customer just asked for (predicted by the
FlowGuard policy, which then starts the new flow's form)."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActiveLoop, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from bot.flows import FORM_OWN_SLOTS, SWITCH_FLOW_ACTION


def leave_form_events(form: str | None) -> list[dict[str, Any]]:
    """Deactivate ``form`` and forget its own answers (the verified order stays: the next
    order form checks it again when it starts)."""
    return [
        ActiveLoop(None),
        SlotSet("requested_slot", None),
        *(SlotSet(slot, None) for slot in FORM_OWN_SLOTS.get(form or "", ())),
    ]


class ActionSwitchFlow(Action):
    def name(self) -> str:
        return SWITCH_FLOW_ACTION

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[dict[str, Any]]:
        events = leave_form_events(tracker.active_loop.get("name"))
        entities = tracker.latest_message.get("entities") or []
        if any(entity.get("entity") == "order_number" for entity in entities):
            # Another order: its email must be given (and checked) again.
            events.append(SlotSet("email", None))
        dispatcher.utter_message(response="utter_switch_flow")
        return events
