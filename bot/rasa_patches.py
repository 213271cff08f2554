"""The changes Rapport makes to Rasa 3.6 at start-up, in one place (``install``).

Rasa has no setting for either, so ``bot.rasa_server`` installs them before the agent
loads; each is small and keeps Rasa's behaviour except for the reason given.

- The tracker store fails closed (``bot.stores.fail_closed``): a store that cannot be
  read fails the turn instead of silently starting a new conversation.
- Event types are looked up once: Rasa rebuilds the list of every ``Event`` subclass,
  recursively, for each event it deserialises, and it deserialises the conversation's
  whole session on every turn. Late in a long conversation that lookup alone was a
  fifth of a turn (cProfile of turns 101-110, docs/benchmarks.md).
"""

from __future__ import annotations

from typing import Any

from rasa.shared.core.events import Event

_original_resolve_by_type = Event.resolve_by_type
_event_classes: dict[str, type[Event]] = {}


def resolve_event_type(type_name: str, default: Any = None) -> type[Event] | None:
    """``Event.resolve_by_type`` with the answer for each known type name remembered."""
    known = _event_classes.get(type_name)
    if known is not None:
        return known
    found = _original_resolve_by_type(type_name, default)
    if found is not None and found is not default:
        _event_classes[type_name] = found
    return found


def install() -> None:
    """Apply every change above (idempotent)."""
    from bot.stores import install_fail_closed_tracker_store

    install_fail_closed_tracker_store()
    Event.resolve_by_type = staticmethod(resolve_event_type)
