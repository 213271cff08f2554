"""The assistant's flows as data: which intent starts which form, what a form fills and
which action finishes it. Shared by the actions and by the FlowGuard policy
(``bot.components.flow_guard``); no Rasa imports, so both sides can read it cheaply.
"""

from __future__ import annotations

# The intent that starts each flow, and the flow's form.
FLOW_FORMS = {
    "order_status": "order_status_form",
    "cancel_order": "cancel_order_form",
    "delivery_problem": "delivery_problem_form",
    "start_return": "return_form",
    "complaint": "complaint_form",
    "update_contact": "contact_update_form",
    "manage_consent": "consent_form",
    "data_access": "data_access_form",
    "data_erasure": "data_erasure_form",
}
FORM_INTENTS = {form: intent for intent, form in FLOW_FORMS.items()}

# The action that finishes each form once it is complete (or ended early).
FORM_SUBMIT_ACTIONS = {
    "order_status_form": "action_check_order_status",
    "cancel_order_form": "action_cancel_order",
    "delivery_problem_form": "action_report_delivery_problem",
    "return_form": "action_submit_return",
    "complaint_form": "action_file_complaint",
    "contact_update_form": "action_update_contact",
    "consent_form": "action_record_consent",
    "data_access_form": "action_show_my_data",
    "data_erasure_form": "action_erase_my_data",
}

# The verified order (number + email) is shared by the order forms: a new form checks it
# again when it starts. The other slots belong to one form and are forgotten with it.
ORDER_SLOTS = ("order_number", "email")
FORM_OWN_SLOTS = {
    "order_status_form": (),
    "cancel_order_form": (),
    "delivery_problem_form": ("delivery_issue",),
    "return_form": ("return_item", "return_reason"),
    "complaint_form": ("complaint_text",),
    "contact_update_form": ("new_contact_value",),
    "consent_form": ("consent_topic", "consent_choice", "consent_channel"),
    "data_access_form": (),
    "data_erasure_form": ("erasure_confirmed",),
}

# How a flow is named when it is offered ("Would you rather ...?").
FLOW_LABELS = {
    "order_status": "check an order",
    "cancel_order": "cancel an order",
    "delivery_problem": "report a delivery problem",
    "start_return": "start a return",
    "complaint": "make a complaint",
    "update_contact": "update your contact details",
    "manage_consent": "change which messages you get from us",
    "data_access": "see what we know about you",
    "data_erasure": "delete your data",
}

# Free-text answers that naturally read like these flows' requests ("it arrived
# broken" as a return reason): there they are answers, not a change of subject.
NARRATIVE_INTENTS = {
    "return_reason": frozenset({"delivery_problem", "complaint"}),
    "complaint_text": frozenset({"delivery_problem", "complaint"}),
}

# Intents the inbound step sends instead of text it would not let NLU see.
INBOUND_INTENTS = ("inbound_too_long", "inbound_unclear", "inbound_other_language")

# Intents that existing rules already answer inside every form (stop, a person, a shop
# question, not understood).
RULE_INTENTS = frozenset({"stop", "request_human", "faq", "nlu_fallback"})

# Intents that are never an answer to a form's free-text question.
NOT_AN_ANSWER_INTENTS = frozenset(
    {
        "stop",
        "request_human",
        "faq",
        "greet",
        "goodbye",
        "thank",
        "bot_challenge",
        "out_of_scope",
        "affirm",
        "deny",
        "prove_identity",
        *INBOUND_INTENTS,
    }
)

SWITCH_FLOW_ACTION = "action_switch_flow"
ANSWER_INTERRUPTION_ACTION = "action_answer_interruption"


def switches_flow(intent: str | None, active_form: str | None, requested_slot: str | None) -> bool:
    """Does this intent, inside ``active_form``, ask for another flow (when confident)?"""
    if intent not in FLOW_FORMS or active_form is None or FLOW_FORMS[intent] == active_form:
        return False
    return intent not in NARRATIVE_INTENTS.get(requested_slot or "", frozenset())
