"""The assistant's NLU training data and domain, read and edited the way a trainer would.

:class:`TrainingData` reads ``data/nlu/*.yml`` (intents and their examples), the rules and
stories that use the intents, and ``domain.yml``. Every write is: validate, take the lock,
re-read, check the caller's version of the intent, splice the changed lines
(``bot.workbench.nlu_yaml``), check that the new text parses to exactly the intended
meaning, then replace the files atomically. Untouched lines stay byte-identical, so a
trainer's change is a reviewable ``git diff`` of the lines they changed.
"""

from __future__ import annotations

import fcntl
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bot.workbench.annotations import (
    EntityMark,
    check_example,
    example_from_parts,
    normalise,
    parse_example,
)
from bot.workbench.intent_plans import (
    DOMAIN,
    EditConflict,
    IntentInUse,
    Plan,
    State,
    plain_of,
    plan_create,
    plan_delete,
    plan_rename,
    valid_intent_name,
    version_of,
)
from bot.workbench.nlu_yaml import (
    IntentBlock,
    LineEdit,
    YamlFile,
    find_intent_blocks,
    insertion,
    write_files,
)
from bot.workbench.references import domain_entities, first_text
from crm_bridge.errors import Conflict, InvalidInput, NotFound

__all__ = [
    "EditConflict",
    "EntityMark",
    "Example",
    "Intent",
    "IntentInUse",
    "TrainingData",
    "example_from_parts",
    "parse_example",
]

LOCK_FILE = ".workbench.lock"


@dataclass(frozen=True)
class Example:
    """One training example; ``index`` is its position within the intent."""

    index: int
    text: str  # the line as written, with annotations
    plain: str  # what the customer typed
    entities: tuple[EntityMark, ...]
    duplicate: bool  # another example of this intent reads the same (case, spaces aside)
    shared_with: tuple[str, ...]  # other intents with an example that reads the same


@dataclass(frozen=True)
class Intent:
    """An intent with its examples; ``version`` changes whenever name or examples do."""

    name: str
    file: str  # relative to the project root
    examples: tuple[Example, ...]
    version: str
    response: str | None  # first text of utter_<name>, if the domain has one


class TrainingData:
    """The NLU data, rules, stories and domain of the project at ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # -- reading ---------------------------------------------------------------------

    def _read(self) -> State:
        rels = []
        for part in ("nlu", "rules", "stories"):
            folder = self.root / "data" / part
            paths = sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")])
            rels += [path.relative_to(self.root).as_posix() for path in paths]
        files = {rel: YamlFile.read(self.root, rel) for rel in [*rels, DOMAIN]}
        blocks = [
            block
            for rel in rels
            if rel.startswith("data/nlu/")
            for block in find_intent_blocks(files[rel])
        ]
        return State(files, blocks)

    def intents(self) -> list[Intent]:
        """Every intent that has NLU examples, sorted by name."""
        return self._intents(self._read())

    def intent(self, name: str) -> Intent:
        """One intent; ``NotFound`` if no NLU file has it."""
        for intent in self.intents():
            if intent.name == name:
                return intent
        raise NotFound(f"There is no intent {name}.")

    def files(self) -> list[str]:
        """The NLU files that hold intents (where a new intent may go)."""
        return sorted({block.rel for block in self._read().blocks})

    @staticmethod
    def _intents(state: State) -> list[Intent]:
        owners: dict[str, set[str]] = {}
        plains = {}
        for block in state.blocks:
            plains[id(block)] = [plain_of(text) for text in block.texts]
            for plain, _ in plains[id(block)]:
                owners.setdefault(normalise(plain), set()).add(block.name)
        intents = {}
        for block in state.blocks:
            if block.name in intents:  # the same intent in a second file: the first one wins
                continue
            parsed = plains[id(block)]
            counts = Counter(normalise(plain) for plain, _ in parsed)
            examples = tuple(
                Example(
                    index,
                    text,
                    plain,
                    marks,
                    counts[normalise(plain)] > 1,
                    tuple(sorted(owners[normalise(plain)] - {block.name})),
                )
                for index, (text, (plain, marks)) in enumerate(
                    zip(block.texts, parsed, strict=True)
                )
            )
            response = first_text(state.domain.data, f"utter_{block.name}")
            version = version_of(block.name, block.texts)
            intents[block.name] = Intent(block.name, block.rel, examples, version, response)
        return [intents[name] for name in sorted(intents)]

    # -- writing: the common steps -----------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[State]:
        """Serialise writers (threads and processes alike: flock locks per open file)."""
        with open(self.root / LOCK_FILE, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield self._read()
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _commit(self, plan: Plan) -> None:
        write_files(self.root, plan.texts())

    @staticmethod
    def _editable(state: State, name: str, version: str | None) -> IntentBlock:
        block = state.block(name)
        if version is not None and version != version_of(block.name, block.texts):
            raise EditConflict(name)
        if block.problem:
            raise Conflict(f"{name} in {block.rel} cannot be edited here: {block.problem}.")
        return block

    @staticmethod
    def _example_line(block: IntentBlock, index: int) -> int:
        if not isinstance(index, int) or not 0 <= index < len(block.example_lines):
            raise InvalidInput("index", f"{block.name} has no example number {index}.")
        return block.example_lines[index]

    @staticmethod
    def _new_example(state: State, block: IntentBlock, text: str, skip: int | None) -> str:
        text, plain, _ = check_example(text, domain_entities(state.domain.data))
        for index, other in enumerate(block.texts):
            if index != skip and plain_of(other)[0] == plain:
                raise InvalidInput("text", f'"{plain}" is already an example of {block.name}.')
        return text

    # -- writing: examples -----------------------------------------------------------

    def add_example(self, intent: str, text: str, version: str) -> Intent:
        """Append an example to ``intent``; return the intent as now on disk."""
        with self._locked() as state:
            block = self._editable(state, intent, version)
            text = self._new_example(state, block, text, None)
            f, plan = state.files[block.rel], Plan(state)
            plan.add(block.rel, insertion(f, block.insert_at, [block.prefix + text + f.newline]))
            plan.examples(block).append(text)
            self._commit(plan)
            return self.intent(intent)

    def edit_example(self, intent: str, index: int, text: str, version: str) -> Intent:
        """Replace example ``index`` of ``intent`` (its line keeps its place)."""
        with self._locked() as state:
            block = self._editable(state, intent, version)
            line = self._example_line(block, index)
            text = self._new_example(state, block, text, index)
            f, plan = state.files[block.rel], Plan(state)
            old = f.lines[line]
            lead = re.match(r" *- *", old)  # the line's own indentation and dash
            ending = old[len(old.rstrip("\r\n")) :]
            new = (lead.group(0) if lead else block.prefix) + text + ending
            plan.add(block.rel, LineEdit(line, line + 1, (new,)))
            plan.examples(block)[index] = text
            self._commit(plan)
            return self.intent(intent)

    def delete_example(self, intent: str, index: int, version: str) -> Intent:
        """Remove example ``index``; the last example of an intent cannot go (delete the intent)."""
        with self._locked() as state:
            block = self._editable(state, intent, version)
            line = self._example_line(block, index)
            if len(block.texts) == 1:
                raise Conflict(f"That is the last example of {intent}; delete the intent instead.")
            plan = Plan(state)
            plan.add(block.rel, LineEdit(line, line + 1, ()))
            del plan.examples(block)[index]
            self._commit(plan)
            return self.intent(intent)

    def move_example(
        self, intent: str, index: int, to_intent: str, version: str, to_version: str | None = None
    ) -> Intent:
        """Move example ``index`` (annotations and all) to ``to_intent``; return ``intent``.

        ``to_version``, when given, must match too (the target's page was open as well).
        """
        with self._locked() as state:
            block = self._editable(state, intent, version)
            line = self._example_line(block, index)
            if to_intent == intent:
                raise InvalidInput("to_intent", f"The example is already in {intent}.")
            target = self._editable(state, to_intent, to_version)
            if len(block.texts) == 1:
                raise Conflict(f"That is the last example of {intent}; delete the intent instead.")
            text = block.texts[index]
            plain = plain_of(text)[0]
            if any(plain_of(other)[0] == plain for other in target.texts):
                raise InvalidInput("to_intent", f'"{plain}" is already an example of {to_intent}.')
            plan = Plan(state)
            f = state.files[target.rel]
            plan.add(target.rel, insertion(f, target.insert_at, [target.prefix + text + f.newline]))
            plan.add(block.rel, LineEdit(line, line + 1, ()))
            plan.examples(target).append(text)
            del plan.examples(block)[index]
            self._commit(plan)
            return self.intent(intent)

    # -- writing: intents ------------------------------------------------------------

    def create_intent(
        self, name: str, file: str, examples: list[str], response: str | None = None
    ) -> Intent:
        """Append a new intent to NLU ``file`` (relative path, one of ``files()``).

        Declares it under ``intents:`` in domain.yml and, with ``response``, adds
        ``utter_<name>`` with that text. Refused if the intent already exists.
        """
        name = valid_intent_name(name)
        with self._locked() as state:
            self._commit(plan_create(state, name, file, examples, response))
            return self.intent(name)

    def rename_intent(self, old: str, new: str, version: str) -> Intent:
        """Rename an intent everywhere: NLU, domain intents, ``utter_<old>``, rules, stories.

        Also follows slot mappings (``intent``/``not_intent``) and button payloads
        (``/old``) in the domain. A retrieval intent keeps its group (faq/a -> faq/b).
        """
        new = valid_intent_name(new)
        with self._locked() as state:
            block = self._editable(state, old, version)
            if new == old:
                return self.intent(old)
            self._commit(plan_rename(state, block, new))
            return self.intent(new)

    def delete_intent(self, name: str, version: str) -> None:
        """Delete an intent, its domain entry and its ``utter_<name>`` if nothing uses it.

        ``IntentInUse`` (a ``Conflict`` naming the files) while a rule, a story, a slot
        mapping or a button still uses the intent.
        """
        with self._locked() as state:
            block = self._editable(state, name, version)
            self._commit(plan_delete(state, block))
