"""Where is my order? (order_status_form -> action_check_order_status)."""

from __future__ import annotations

from datetime import date
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.formatting import order_status_text
from actions.verification import (
    VerifiedOrderFormValidation,
    load_verified_order,
    reset_order_slots,
)
from crm_bridge.gateway import Outcome


class ValidateOrderStatusForm(VerifiedOrderFormValidation):
    def name(self) -> str:
        return "validate_order_status_form"


class ActionCheckOrderStatus(Action):
    """Tell the customer their order's status, carrier, tracking, delivery date and items."""

    def name(self) -> str:
        return "action_check_order_status"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[dict[str, Any]]:
        found = load_verified_order(dispatcher, tracker)
        if found is None:
            return reset_order_slots()
        _, order = found
        dispatcher.utter_message(text=order_status_text(order, date.today()))
        dispatcher.utter_message(response="utter_anything_else")
        return [*reset_order_slots(), SlotSet("interaction_outcome", Outcome.RESOLVED_BY_BOT.value)]
