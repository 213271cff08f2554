"""Where rules, stories and the domain mention an intent or a response.

Renaming an intent must follow it everywhere Rasa looks it up, and deleting one must not
leave a rule waiting for an intent that can no longer be predicted. Each mention is a
:class:`Ref` with its exact position, so a rename is a one-token splice.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ruamel.yaml.comments import CommentedSeq

from bot.workbench.nlu_yaml import YamlFile


@dataclass(frozen=True)
class Ref:
    """One mention: ``kind`` is "intent", "action" or "payload" (a button's ``/intent``)."""

    rel: str
    path: tuple[Any, ...]  # keys/indexes from the file's root to the scalar
    line: int
    col: int
    kind: str
    name: str  # the intent or action mentioned
    where: str  # for people: "rule 'greet'", "slot email", "response utter_greet"


def domain_intents(domain: Any) -> list[str]:
    """The intent names under ``intents:`` (plain names or ``- name: {options}``)."""
    names = []
    for item in domain.get("intents") or []:
        names.append(str(next(iter(item))) if isinstance(item, dict) else str(item))
    return names


def domain_entities(domain: Any) -> set[str]:
    """The entity names under ``entities:``."""
    entities = domain.get("entities") or []
    return {str(next(iter(e))) if isinstance(e, dict) else str(e) for e in entities}


def first_text(domain: Any, response: str) -> str | None:
    """The first ``text`` of a response in the domain, if there is one."""
    for variant in (domain.get("responses") or {}).get(response) or []:
        if isinstance(variant, dict) and isinstance(variant.get("text"), str):
            return str(variant["text"])
    return None


def _scalar_refs(
    f: YamlFile, node: Any, key: str, path: tuple[Any, ...], kind: str, where: str
) -> Iterator[Ref]:
    """A mention under ``node[key]``: one scalar, or a list of them."""
    value = node.get(key)
    if isinstance(value, str):
        line, col = node.lc.value(key)
        yield Ref(f.rel, (*path, key), line, col, kind, str(value), where)
    elif isinstance(value, CommentedSeq):
        for index, item in enumerate(value):
            if isinstance(item, str):
                line, col = value.lc.item(index)
                yield Ref(f.rel, (*path, key, index), line, col, kind, str(item), where)


def _step_refs(f: YamlFile, step: Any, path: tuple[Any, ...], where: str) -> Iterator[Ref]:
    if not isinstance(step, dict):
        return
    yield from _scalar_refs(f, step, "intent", path, "intent", where)
    yield from _scalar_refs(f, step, "action", path, "action", where)
    for index, alternative in enumerate(step.get("or") or []):
        yield from _step_refs(f, alternative, (*path, "or", index), where)


def story_refs(f: YamlFile) -> Iterator[Ref]:
    """Intents and actions used by the rules and stories of one file."""
    data = f.data
    if not isinstance(data, dict):
        return
    for section, label in (("rules", "rule"), ("stories", "story")):
        for index, entry in enumerate(data.get(section) or []):
            if not isinstance(entry, dict):
                continue
            where = f"{label} '{entry.get(label, index + 1)}'"
            for part in ("condition", "steps"):
                for number, step in enumerate(entry.get(part) or []):
                    yield from _step_refs(f, step, (section, index, part, number), where)


def domain_refs(f: YamlFile) -> Iterator[Ref]:
    """Mentions in the domain: the actions list, slot mappings, and button payloads."""
    domain = f.data
    actions: Any = domain.get("actions") or []
    for index, action in enumerate(actions):
        if isinstance(action, str):
            line, col = actions.lc.item(index)
            yield Ref(f.rel, ("actions", index), line, col, "action", str(action), "actions list")
    for slot, spec in (domain.get("slots") or {}).items():
        mappings = spec.get("mappings") if isinstance(spec, dict) else None
        for index, mapping in enumerate(mappings or []):
            if isinstance(mapping, dict):
                path = ("slots", slot, "mappings", index)
                for key in ("intent", "not_intent"):
                    yield from _scalar_refs(f, mapping, key, path, "intent", f"slot {slot}")
    for response, variants in (domain.get("responses") or {}).items():
        for index, variant in enumerate(variants or []):
            buttons = variant.get("buttons") if isinstance(variant, dict) else None
            for number, button in enumerate(buttons or []):
                payload = button.get("payload") if isinstance(button, dict) else None
                if isinstance(payload, str) and payload.startswith("/"):
                    line, col = button.lc.value("payload")
                    at = ("responses", response, index, "buttons", number, "payload")
                    name = payload[1:].split("{", 1)[0]
                    yield Ref(f.rel, at, line, col, "payload", name, f"response {response}")


def describe(refs: list[Ref]) -> str:
    """``data/rules/basics.yml (rule 'greet'), domain.yml (slot email)``."""
    by_file: dict[str, list[str]] = {}
    for ref in refs:
        wheres = by_file.setdefault(ref.rel, [])
        if ref.where not in wheres:
            wheres.append(ref.where)
    return ", ".join(f"{rel} ({', '.join(wheres)})" for rel, wheres in by_file.items())
