"""The remembered event-type lookup answers exactly as Rasa's own."""

from __future__ import annotations

import pytest
from rasa.shared.core.events import ActionExecuted, Event, SlotSet, UserUttered
from rasa.shared.utils.common import all_subclasses

from bot import rasa_patches


@pytest.mark.parametrize("cls", [UserUttered, ActionExecuted, SlotSet])
def test_known_types_resolve_to_rasas_answer_every_time(cls: type[Event]) -> None:
    for _ in range(2):  # computed, then remembered
        assert rasa_patches.resolve_event_type(cls.type_name) is cls


def test_every_event_type_resolves_as_before() -> None:
    for cls in all_subclasses(Event):
        original = rasa_patches._original_resolve_by_type(cls.type_name)
        assert rasa_patches.resolve_event_type(cls.type_name) is original


def test_unknown_types_keep_rasas_answers() -> None:
    assert rasa_patches.resolve_event_type("no such event", default=SlotSet) is SlotSet
    assert rasa_patches.resolve_event_type("topic") is None
    with pytest.raises(ValueError, match="Unknown event name"):
        rasa_patches.resolve_event_type("no such event")
    assert "no such event" not in rasa_patches._event_classes


def test_installed_deserialisation_uses_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from rasa.core.agent import Agent

    monkeypatch.setattr(Event, "resolve_by_type", Event.__dict__["resolve_by_type"])
    monkeypatch.setattr(Agent, "_create_tracker_store", Agent.__dict__["_create_tracker_store"])
    rasa_patches.install()
    event = Event.from_parameters({"event": "slot", "name": "email", "value": "x"})
    assert isinstance(event, SlotSet) and (event.key, event.value) == ("email", "x")
    assert rasa_patches._event_classes["slot"] is SlotSet
