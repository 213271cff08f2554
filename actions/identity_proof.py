"""A proof that arrives by itself (``/prove_identity`` -> action_prove_identity).

The channels send ``/prove_identity`` with the proof in the message's metadata: a deep
link's token (Telegram ``/start <token>``, the web chat's ``?link=``), the shop's signed
login token (web chat), or the customer's own Telegram phone contact. Channel-specific
metadata only counts on its own channel: a REST caller cannot claim a Telegram contact.
"""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.crm import get_identity_proofs
from actions.handoff import tell_crm_failure
from actions.identity import channel_of, identity_of
from crm_bridge.errors import InvalidInput, RapportError
from crm_bridge.gateway import ContactView
from crm_bridge.identity_proof import IdentityProofs

NOTHING_TO_CHECK = "There was nothing for me to check there. How can I help?"


def _proof_metadata(tracker: Tracker) -> dict[str, Any]:
    metadata = (tracker.latest_message or {}).get("metadata") or {}
    return metadata if isinstance(metadata, dict) else {}


def _prove(proofs: IdentityProofs, tracker: Tracker) -> ContactView | None:
    """The contact the message's proof shows (linked now), or None when it has none."""
    metadata = _proof_metadata(tracker)
    who = identity_of(tracker)
    telegram = metadata.get("telegram") if channel_of(tracker) == "telegram" else None
    shared = telegram.get("shared_contact") if isinstance(telegram, dict) else None
    if isinstance(shared, dict):
        return proofs.accept_phone_contact(
            str(shared.get("phone") or ""), shared.get("own") is True, who
        )
    if isinstance(metadata.get("link_token"), str):
        return proofs.redeem_link(metadata["link_token"], who)
    if isinstance(metadata.get("shop_token"), str):
        return proofs.accept_shop_token(metadata["shop_token"], who)
    return None


class ActionProveIdentity(Action):
    """Check the proof the message carries and link the customer; say what happened."""

    def name(self) -> str:
        return "action_prove_identity"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[dict[str, Any]]:
        try:
            contact = _prove(get_identity_proofs(), tracker)
        except InvalidInput as error:
            dispatcher.utter_message(text=error.message)
            return []
        except RapportError as error:
            tell_crm_failure(dispatcher, error, tracker)
            return []
        if contact is None:
            dispatcher.utter_message(text=NOTHING_TO_CHECK)
            return []
        first_name = contact.name.split()[0] if contact.name.strip() else "there"
        dispatcher.utter_message(
            text=f"Hi {first_name}, this chat is now linked to your account, so I can help "
            "with your orders and details. How can I help?"
        )
        return [SlotSet("proof_code", None)]
