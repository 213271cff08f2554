"""Entity annotations inside NLU examples: ``[10001](order_number)`` and friends.

Rasa reads an example line with one regex (``rasa.shared.nlu.training_data.entities_parser``)
and silently keeps whatever it does not match as plain text, so a typo such as
``[10001](order_number`` trains the model on the literal brackets. The workbench is stricter:
it uses the same regex, then refuses any bracket left over, any JSON it cannot read and any
key Rasa does not know.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass

from crm_bridge.errors import InvalidInput

# The same pattern as Rasa 3.6's ENTITY_REGEX, so both read a line the same way:
# [text](entity), [text](entity:value), [text]{"entity": ...}, [text][{...}, {...}].
ENTITY_REGEX = re.compile(
    r"\[(?P<entity_text>[^\]]+?)\]"
    r"(\((?P<entity>[^:)]+?)(?:\:(?P<value>[^)]+))?\)"
    r"|\{(?P<entity_dict>[^}]+?)\}"
    r"|\[(?P<list_entity_dicts>.*?)\])"
)
_SINGLE_ENTITY_DICT = re.compile(r"{(?P<entity_dict>[^}]+?)\}")
_ENTITY_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_DICT_KEYS = frozenset({"entity", "value", "role", "group"})

MAX_EXAMPLE_LENGTH = 500


@dataclass(frozen=True)
class EntityMark:
    """One entity in an example; ``start``/``end`` are offsets in the plain text.

    ``value`` is None when the entity's value is the marked text itself.
    """

    start: int
    end: int
    entity: str
    value: str | None = None
    role: str | None = None
    group: str | None = None


def _key(mark: EntityMark) -> tuple[int, int, str, str, str, str]:
    return (mark.start, mark.end, mark.entity, mark.value or "", mark.role or "", mark.group or "")


def _refuse(reason: str) -> InvalidInput:
    return InvalidInput("text", reason)


def _mark_from_dict(raw: str, start: int, end: int) -> EntityMark:
    try:
        data = json.loads("{" + raw + "}")
    except json.JSONDecodeError as exc:
        raise _refuse(f"The entity annotation {{{raw}}} is not valid JSON ({exc.msg}).") from exc
    if not isinstance(data, dict) or "entity" not in data:
        raise _refuse(f'The entity annotation {{{raw}}} needs an "entity" key.')
    unknown = sorted(set(data) - _DICT_KEYS)
    if unknown:
        raise _refuse(
            f"The entity annotation {{{raw}}} has unknown keys ({', '.join(unknown)}); "
            'only "entity", "value", "role" and "group" are allowed.'
        )
    for key in ("entity", "role", "group"):
        if key in data and not isinstance(data[key], str):
            raise _refuse(f'"{key}" in the entity annotation {{{raw}}} must be text.')
    value = data.get("value")
    if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int, float))):
        raise _refuse(f'"value" in the entity annotation {{{raw}}} must be text or a number.')
    return EntityMark(
        start,
        end,
        data["entity"],
        None if value is None else str(value),
        data.get("role"),
        data.get("group"),
    )


def parse_example(text: str) -> tuple[str, tuple[EntityMark, ...]]:
    """Split an annotated example into its plain text and its entities.

    Raises ``InvalidInput`` (field ``text``) for malformed annotations: brackets that do
    not form an annotation, unreadable JSON, unknown keys or odd entity names.
    """
    plain_parts: list[str] = []
    marks: list[EntityMark] = []
    position = 0
    length = 0
    for match in ENTITY_REGEX.finditer(text):
        between = text[position : match.start()]
        plain_parts.append(between)
        length += len(between)
        span = match.group("entity_text")
        if "[" in span:
            raise _refuse(f"The entity annotation {match.group(0)} has a '[' inside its text.")
        start, end = length, length + len(span)
        if match.group("entity") is not None:
            marks.append(EntityMark(start, end, match.group("entity"), match.group("value")))
        elif match.group("entity_dict") is not None:
            marks.append(_mark_from_dict(match.group("entity_dict"), start, end))
        else:
            inner = match.group("list_entity_dicts")
            found = list(_SINGLE_ENTITY_DICT.finditer(inner))
            if not found or _SINGLE_ENTITY_DICT.sub("", inner).strip(" ,"):
                raise _refuse(f"The entity annotation {match.group(0)} is not a list of {{...}}.")
            marks.extend(_mark_from_dict(m.group("entity_dict"), start, end) for m in found)
        plain_parts.append(span)
        length = end
        position = match.end()
    plain_parts.append(text[position:])
    plain = "".join(plain_parts)
    if "[" in plain or "]" in plain:
        raise _refuse(
            "The example has a '[' or ']' that is not part of an entity annotation; "
            "write annotations as [text](entity)."
        )
    for mark in marks:
        if not _ENTITY_NAME.fullmatch(mark.entity):
            raise _refuse(f"'{mark.entity}' is not a valid entity name.")
    return plain, tuple(marks)


def example_from_parts(plain: str, entities: list[EntityMark]) -> str:
    """Build the annotated example line for ``plain`` with ``entities`` marked in it.

    Entities on the same span become Rasa's list form ``[text][{...}, {...}]``; an entity
    with a value, role or group the JSON form; a bare entity ``[text](entity)``.
    """
    if "[" in plain or "]" in plain:
        raise _refuse("Square brackets are reserved for entity annotations in examples.")
    spans: dict[tuple[int, int], list[EntityMark]] = {}
    for mark in sorted(entities, key=_key):
        if not 0 <= mark.start < mark.end <= len(plain):
            raise _refuse(f"The entity {mark.entity} lies outside the example's text.")
        spans.setdefault((mark.start, mark.end), []).append(mark)
    out: list[str] = []
    position = 0
    for (start, end), marks in sorted(spans.items()):
        if start < position:
            raise _refuse("Two entities overlap; an example can only mark separate spans.")
        span = plain[start:end]
        out.append(plain[position:start])
        if len(marks) == 1 and marks[0].role is None and marks[0].group is None:
            mark = marks[0]
            if mark.value is None or mark.value == span:
                out.append(f"[{span}]({mark.entity})")
            else:
                out.append(f"[{span}]{_mark_json(mark)}")
        elif len(marks) == 1:
            out.append(f"[{span}]{_mark_json(marks[0])}")
        else:
            out.append(f"[{span}][{', '.join(_mark_json(m) for m in marks)}]")
        position = end
    out.append(plain[position:])
    text = "".join(out)
    # Whatever cannot be written so that Rasa reads it back (a '}' in a value, say) is refused.
    back_plain, back_marks = parse_example(text)
    expected = sorted((_normalised(m, plain) for m in entities), key=_key)
    if (
        back_plain != plain
        or sorted((_normalised(m, plain) for m in back_marks), key=_key) != expected
    ):
        raise _refuse(
            "These entities cannot be written as an annotation (a '}' or ')' in a value?)."
        )
    return text


def _normalised(mark: EntityMark, plain: str) -> EntityMark:
    # A value equal to the marked text is the same as no value.
    if mark.value == plain[mark.start : mark.end]:
        return EntityMark(mark.start, mark.end, mark.entity, None, mark.role, mark.group)
    return mark


def _mark_json(mark: EntityMark) -> str:
    data = {"entity": mark.entity}
    for key in ("value", "role", "group"):
        if getattr(mark, key) is not None:
            data[key] = getattr(mark, key)
    return json.dumps(data, ensure_ascii=False)


def invisible_character(text: str, allowed: str = "") -> str | None:
    """The first character that must not go into a data file ("U+0009"), if any.

    Control characters, lone surrogates, Unicode line/paragraph separators (YAML may
    count them as line breaks) and the byte-order mark are invisible mistakes at best.
    """
    for char in text:
        if char in allowed:
            continue
        if unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp") or char in "\ufeff\ufffe\uffff":
            return f"U+{ord(char):04X}"
    return None


def normalise(plain: str) -> str:
    """The form two examples are compared in for the duplicate flag (case and spaces)."""
    return " ".join(plain.casefold().split())


def check_example(
    text: str, entities_declared: set[str]
) -> tuple[str, str, tuple[EntityMark, ...]]:
    """Validate one example line for writing; return (stripped text, plain, entities).

    Raises ``InvalidInput`` (field ``text``) with a reason a trainer can act on.
    """
    if not isinstance(text, str):
        raise _refuse("The example must be text.")
    if "\n" in text or "\r" in text:
        raise _refuse("An example is a single line; split it into several examples.")
    text = text.strip()
    if not text:
        raise _refuse("The example is empty.")
    if len(text) > MAX_EXAMPLE_LENGTH:
        raise _refuse(f"The example is longer than {MAX_EXAMPLE_LENGTH} characters.")
    hidden = invisible_character(text)
    if hidden:
        raise _refuse(f"The example contains an invisible control character ({hidden}).")
    plain, marks = parse_example(text)
    undeclared = sorted({m.entity for m in marks} - entities_declared)
    if undeclared:
        raise _refuse(
            f"The entity {', '.join(undeclared)} is not declared under entities: in domain.yml."
        )
    return text, plain, marks
