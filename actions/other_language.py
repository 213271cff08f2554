"""A message in another language: say, in that language, that this assistant speaks
English only, and offer a person on the spot (or carrying on in English)."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.inbound import inbound_info

# language -> (reply, "talk to a person" button, "continue in English" button)
REPLIES = {
    "en": (
        "Sorry, I can only chat in English. Would you like to talk to a person, "
        "or carry on in English?",
        "Talk to a person",
        "Continue in English",
    ),
    "nl": (
        "Sorry, ik kan alleen in het Engels chatten. Wilt u met een medewerker praten, "
        "of verdergaan in het Engels?",
        "Met een medewerker praten",
        "Verder in het Engels",
    ),
    "de": (
        "Entschuldigung, ich kann nur auf Englisch chatten. Möchten Sie mit einem "
        "Mitarbeiter sprechen oder auf Englisch weitermachen?",
        "Mit einem Mitarbeiter sprechen",
        "Weiter auf Englisch",
    ),
    "fr": (
        "Désolé, je ne peux discuter qu'en anglais. Voulez-vous parler à une personne, "
        "ou continuer en anglais ?",
        "Parler à une personne",
        "Continuer en anglais",
    ),
    "es": (
        "Lo siento, solo puedo chatear en inglés. ¿Quiere hablar con una persona "
        "o continuar en inglés?",
        "Hablar con una persona",
        "Continuar en inglés",
    ),
    "it": (
        "Mi dispiace, posso chattare solo in inglese. Vuole parlare con una persona "
        "o continuare in inglese?",
        "Parla con una persona",
        "Continua in inglese",
    ),
    "pt": (
        "Desculpe, só consigo conversar em inglês. Quer falar com uma pessoa "
        "ou continuar em inglês?",
        "Falar com uma pessoa",
        "Continuar em inglês",
    ),
}


def reply_other_language(dispatcher: CollectingDispatcher, tracker: Tracker) -> str:
    """Answer in the customer's language (English for unknown codes); returns the code used."""
    language = str(inbound_info(tracker.latest_message).get("language") or "en").lower()
    if language not in REPLIES:
        language = "en"
    text, human, english = REPLIES[language]
    dispatcher.utter_message(
        text=text,
        buttons=[
            {"title": human, "payload": "/request_human"},
            {"title": english, "payload": "/greet"},
        ],
    )
    return language


class ActionReplyOtherLanguage(Action):
    def name(self) -> str:
        return "action_reply_other_language"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[dict[str, Any]]:
        reply_other_language(dispatcher, tracker)
        return []
