"""One write of the workbench as a plan: the line splices and what they must mean.

A :class:`Plan` collects the edits of every file one operation touches (the NLU file, the
domain, rules and stories) together with the expected meaning of each touched file; its
``texts`` refuses to produce anything that does not parse to exactly that meaning. The
intent-level operations (create, rename, delete) are built here; ``TrainingData`` runs
them under its lock.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from bot.workbench.annotations import (
    ENTITY_REGEX,
    EntityMark,
    check_example,
    invisible_character,
    parse_example,
)
from bot.workbench.nlu_yaml import (
    BrokenFile,
    Edit,
    IntentBlock,
    YamlFile,
    apply_edits,
    insertion,
    map_entry_range,
    parse_yaml,
    quote,
    seq_item_range,
    summary,
    tidy_delete,
    token_edit,
    top_level_end,
)
from bot.workbench.references import (
    Ref,
    describe,
    domain_entities,
    domain_intents,
    domain_refs,
    story_refs,
)
from crm_bridge.errors import Conflict, InvalidInput, NotFound

INTENT_NAME = re.compile(r"[a-z][a-z0-9_]*(/[a-z0-9_]+)?")
MAX_INTENT_NAME = 80
MAX_RESPONSE_LENGTH = 2000
# Rasa's built-in intents, and words a YAML reader may turn into a boolean or null.
RESERVED_NAMES = frozenset(
    {"restart", "back", "session_start", "nlu_fallback"}
    | {"null", "true", "false", "yes", "no", "on", "off", "y", "n"}
)
DOMAIN = "domain.yml"


class EditConflict(Conflict):
    """The intent changed on disk since the caller read it; nothing was written."""

    def __init__(self, intent: str) -> None:
        super().__init__(
            f"Someone else changed intent {intent} since you opened it; your edit was not "
            "saved. Reload to see their change, then make yours again."
        )
        self.intent = intent


class IntentInUse(Conflict):
    """The intent cannot be deleted: rules, stories or the domain still use it."""

    def __init__(self, intent: str, uses: str) -> None:
        super().__init__(f"{intent} is still used in {uses}; change those first, then delete it.")
        self.intent = intent
        self.uses = uses


def version_of(name: str, texts: list[str]) -> str:
    """The concurrency token of an intent: a short hash of its name and examples."""
    return hashlib.sha256("\n".join([name, *texts]).encode("utf-8")).hexdigest()[:12]


def plain_of(text: str) -> tuple[str, tuple[EntityMark, ...]]:
    # Reading must not fail on an example Rasa accepts but the workbench would refuse.
    try:
        return parse_example(text)
    except InvalidInput:
        return ENTITY_REGEX.sub(lambda m: m.group("entity_text"), text), ()


def valid_intent_name(name: Any, field: str = "name") -> str:
    """The name if it may be used for an intent, else ``InvalidInput``."""
    if not isinstance(name, str) or not INTENT_NAME.fullmatch(name):
        raise InvalidInput(
            field,
            f"'{name}' is not a valid intent name: use lower-case letters, digits and _ "
            "(and one / for a retrieval intent, as in faq/opening_hours).",
        )
    if len(name) > MAX_INTENT_NAME:
        raise InvalidInput(field, f"An intent name has at most {MAX_INTENT_NAME} characters.")
    if name in RESERVED_NAMES or name.partition("/")[0] in RESERVED_NAMES:
        raise InvalidInput(field, f"'{name}' is reserved (by Rasa or by YAML); choose another.")
    return name


def set_path(data: Any, path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        data = data[key]
    data[path[-1]] = value


@dataclass
class State:
    """Everything read from disk for one request."""

    files: dict[str, YamlFile]
    blocks: list[IntentBlock]

    @property
    def domain(self) -> YamlFile:
        return self.files[DOMAIN]

    def block(self, name: str) -> IntentBlock:
        for block in self.blocks:
            if block.name == name:
                return block
        raise NotFound(f"There is no intent {name}.")

    def refs(self) -> list[Ref]:
        refs = [
            ref
            for rel, f in self.files.items()
            if rel.startswith(("data/rules/", "data/stories/"))
            for ref in story_refs(f)
        ]
        return refs + list(domain_refs(self.domain))


class Plan:
    """The edits of one write, and what each touched file must mean afterwards."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.edits: dict[str, list[Edit]] = {}
        self.expected: dict[str, Any] = {}

    def add(self, rel: str, edit: Edit) -> None:
        self.edits.setdefault(rel, []).append(edit)

    def expect(self, rel: str) -> Any:
        if rel not in self.expected:
            self.expected[rel] = summary(rel, self.state.files[rel].data)
        return self.expected[rel]

    def examples(self, block: IntentBlock) -> list[str]:
        examples: list[str] = self.expect(block.rel)["nlu"][block.item_index]["examples"]
        return examples

    def texts(self) -> dict[str, str]:
        """The new text of each changed file, after checking that it means what it should."""
        out = {}
        for rel in sorted(set(self.edits) | set(self.expected)):
            f = self.state.files[rel]
            text = apply_edits(f.lines, self.edits.get(rel, []))
            try:
                got = summary(rel, parse_yaml(text, rel))
            except BrokenFile as exc:
                raise RuntimeError(f"Editing {rel} broke its YAML; nothing was saved.") from exc
            if got != self.expect(rel):
                raise RuntimeError(f"Editing {rel} changed more than intended; nothing was saved.")
            if text != f.text:
                out[rel] = text
        return out


def _check_response(response: Any) -> str:
    if not isinstance(response, str) or not response.strip():
        raise InvalidInput("response", "The response is empty; write one or leave it out.")
    if len(response.strip()) > MAX_RESPONSE_LENGTH:
        raise InvalidInput("response", f"A response has at most {MAX_RESPONSE_LENGTH} characters.")
    hidden = invisible_character(response, allowed="\n\t")
    if hidden:
        raise InvalidInput("response", f"The response contains an invisible character ({hidden}).")
    return response.strip()


def _append_intent_line(plan: Plan, name: str) -> None:
    f = plan.state.domain
    seq = f.data.get("intents")
    if not isinstance(seq, CommentedSeq) or not seq or seq.fa.flow_style():
        raise Conflict(f"domain.yml has no block list under intents: to add {name} to.")
    last = len(seq) - 1
    _, end = seq_item_range(f, seq, last, top_level_end(f, "intents"))
    line, col = seq.lc.item(last)
    plan.add(f.rel, insertion(f, end, [f"{f.lines[line][:col]}{name}{f.newline}"]))
    plan.expect(f.rel)["intents"].append(name)


def _append_response(plan: Plan, utter: str, text: str) -> None:
    f, nl = plan.state.domain, plan.state.domain.newline
    responses = f.data.get("responses")
    if "responses" not in f.data:
        new = [nl, f"responses:{nl}", f"  {utter}:{nl}", f"    - text: {quote(text)}{nl}"]
        plan.add(f.rel, insertion(f, len(f.lines), new))
        plan.expect(f.rel)["responses"] = {utter: [{"text": text}]}
        return
    if not isinstance(responses, CommentedMap) or not responses or responses.fa.flow_style():
        raise Conflict(f"domain.yml's responses: cannot be extended here; add {utter} by hand.")
    keys = list(responses)
    key_col = responses.lc.key(keys[0])[1]
    prefix = " " * (key_col + 2) + "- "
    variants = responses[keys[0]]
    if isinstance(variants, CommentedSeq) and variants and not variants.fa.flow_style():
        line, col = variants.lc.item(0)
        prefix = f.lines[line][:col]  # the domain's own "    - " before "text:"
    _, end = map_entry_range(f, responses, keys[-1], top_level_end(f, "responses"))
    new = [f"{' ' * key_col}{utter}:{nl}", f"{prefix}text: {quote(text)}{nl}"]
    plan.add(f.rel, insertion(f, end, new))
    plan.expect(f.rel)["responses"][utter] = [{"text": text}]


def _refuse_taken(state: State, name: str) -> None:
    base, _, sub = name.partition("/")
    taken = {block.name for block in state.blocks}
    if name in taken or (not sub and name in domain_intents(state.domain.data)):
        raise InvalidInput("name", f"There is already an intent {name}.")
    if sub and base in taken:
        raise InvalidInput(
            "name", f"{base} is an ordinary intent, so {name} cannot be a part of it."
        )
    if not sub and any(other.startswith(name + "/") for other in taken):
        raise InvalidInput("name", f"{name} is the group of retrieval intents such as {name}/...")


def plan_create(
    state: State, name: str, file: str, examples: list[str], response: str | None
) -> Plan:
    """Append intent ``name`` to NLU ``file``, declare it in the domain, add ``utter_<name>``."""
    _refuse_taken(state, name)
    in_file = [block for block in state.blocks if block.rel == file]
    if not in_file:
        choices = ", ".join(sorted({block.rel for block in state.blocks}))
        raise InvalidInput(
            "file", f"{file} is not an NLU file with intents; choose one of {choices}."
        )
    # The new item copies the layout of an intent the workbench can read line by line.
    sample = next((block for block in in_file if not block.problem), None)
    if sample is None:
        raise InvalidInput("file", f"The intents in {file} have a layout the workbench can't copy.")
    if not isinstance(examples, list) or not examples:
        raise InvalidInput("examples", "A new intent needs at least one example.")
    texts: list[str] = []
    plains: set[str] = set()
    for example in examples:
        try:
            text, plain, _ = check_example(example, domain_entities(state.domain.data))
        except InvalidInput as exc:
            raise InvalidInput("examples", exc.message) from exc
        if plain in plains:
            raise InvalidInput("examples", f'"{plain}" is in the list twice.')
        texts.append(text)
        plains.add(plain)
    utter = f"utter_{name}"
    if response is not None:
        response = _check_response(response)
        if utter in (state.domain.data.get("responses") or {}):
            raise InvalidInput("response", f"domain.yml already has a response {utter}.")

    plan, f = Plan(state), state.files[file]
    seq, nl = f.data["nlu"], f.newline
    _, end = seq_item_range(f, seq, len(seq) - 1, top_level_end(f, "nlu"))
    dash = f.lines[sample.start][: seq.lc.item(sample.item_index)[1]]
    key_col = seq[sample.item_index].lc.key("examples")[1]
    prefix = sample.prefix
    # A blank line between items if the file has them (all our files do).
    spaced = any(f.lines[seq.lc.item(i)[0] - 1].strip() == "" for i in range(1, len(seq)))
    new = [nl] if spaced or len(seq) == 1 else []
    new += [f"{dash}intent: {name}{nl}", f"{' ' * key_col}examples: |{nl}"]
    new += [prefix + text + nl for text in texts]
    plan.add(file, insertion(f, end, new))
    plan.expect(file)["nlu"].append({"intent": name, "examples": texts})
    domain_name = name.partition("/")[0]
    if domain_name not in domain_intents(state.domain.data):
        _append_intent_line(plan, domain_name)
    if response is not None:
        _append_response(plan, utter, response)
    return plan


def _refuse_split(state: State, block: IntentBlock) -> None:
    files = [b.rel for b in state.blocks if b.name == block.name]
    if len(files) > 1:
        raise Conflict(
            f"{block.name} has examples in several files ({', '.join(files)}); "
            "merge them into one by hand first."
        )


def plan_rename(state: State, block: IntentBlock, new: str) -> Plan:
    """Rename an intent in its NLU file, the domain (with utter_<old>), rules and stories."""
    _refuse_split(state, block)
    old = block.name
    old_base, _, old_sub = old.partition("/")
    new_base, _, new_sub = new.partition("/")
    if bool(old_sub) != bool(new_sub) or (old_base != new_base and old_sub):
        raise InvalidInput(
            "name",
            "A retrieval intent keeps its group (faq/a becomes faq/b), and an "
            "ordinary intent stays ordinary.",
        )
    _refuse_taken(state, new)
    domain = state.domain
    responses: Any = domain.data.get("responses") or {}
    utter_old, utter_new = f"utter_{old}", f"utter_{new}"
    if utter_old in responses and utter_new in responses:
        raise InvalidInput("name", f"domain.yml already has a response {utter_new}.")

    plan, f = Plan(state), state.files[block.rel]
    line, col = f.data["nlu"][block.item_index].lc.value("intent")
    plan.add(block.rel, token_edit(f, line, col, old, new))
    plan.expect(block.rel)["nlu"][block.item_index]["intent"] = new
    if not old_sub and old in domain_intents(domain.data):
        index = domain_intents(domain.data).index(old)
        entry, expected = domain.data["intents"][index], plan.expect(DOMAIN)["intents"]
        if isinstance(entry, CommentedMap):
            line, col = entry.lc.key(next(iter(entry)))
            expected[index] = {new: expected[index][old]}
        else:
            line, col = domain.data["intents"].lc.item(index)
            expected[index] = new
        plan.add(DOMAIN, token_edit(domain, line, col, old, new))
    renamed_response = utter_old in responses
    if renamed_response:
        line, col = responses.lc.key(utter_old)
        plan.add(DOMAIN, token_edit(domain, line, col, utter_old, utter_new))
        expected_responses = plan.expect(DOMAIN)["responses"]
        expected_responses[utter_new] = expected_responses.pop(utter_old)
    for ref in state.refs():
        target = state.files[ref.rel]
        if ref.kind == "intent" and ref.name == old:
            plan.add(ref.rel, token_edit(target, ref.line, ref.col, old, new))
            set_path(plan.expect(ref.rel), ref.path, new)
        elif ref.kind == "action" and ref.name == utter_old and renamed_response:
            plan.add(ref.rel, token_edit(target, ref.line, ref.col, utter_old, utter_new))
            set_path(plan.expect(ref.rel), ref.path, utter_new)
        elif ref.kind == "payload" and ref.name == old:
            plan.add(ref.rel, token_edit(target, ref.line, ref.col, "/" + old, "/" + new))
            payload = plan.expect(ref.rel)
            for key in ref.path:
                payload = payload[key]
            set_path(plan.expect(ref.rel), ref.path, "/" + new + payload[len(old) + 1 :])
    return plan


def plan_delete(state: State, block: IntentBlock) -> Plan:
    """Remove an intent nobody uses: its NLU item, domain entry and unused utter_<name>."""
    _refuse_split(state, block)
    name = block.name
    base, _, sub = name.partition("/")
    siblings = [b for b in state.blocks if b.name != name and b.name.startswith(base + "/")]
    # The last faq/... takes the domain's "faq" with it, so rules using "faq" count too.
    gone = {name} if not sub or siblings else {name, base}
    refs = state.refs()
    uses = [ref for ref in refs if ref.kind in ("intent", "payload") and ref.name in gone]
    if uses:
        raise IntentInUse(name, describe(uses))
    f = state.files[block.rel]
    if len(f.data["nlu"]) == 1:
        raise Conflict(f"{name} is all that {block.rel} holds; remove the file by hand instead.")

    plan = Plan(state)
    plan.add(block.rel, tidy_delete(f.lines, block.start, block.end))
    del plan.expect(block.rel)["nlu"][block.item_index]
    domain = state.domain
    declared = domain_intents(domain.data)
    domain_name = base if sub else name
    if domain_name in gone and domain_name in declared and len(declared) > 1:
        index = declared.index(domain_name)
        seq = domain.data["intents"]
        start, end = seq_item_range(domain, seq, index, top_level_end(domain, "intents"))
        plan.add(DOMAIN, tidy_delete(domain.lines, start, end))
        del plan.expect(DOMAIN)["intents"][index]
    utter = f"utter_{name}"
    responses: Any = domain.data.get("responses") or {}
    used = any(ref.kind == "action" and ref.name == utter for ref in refs)
    if utter in responses and not used and len(responses) > 1:
        start, end = map_entry_range(domain, responses, utter, top_level_end(domain, "responses"))
        plan.add(DOMAIN, tidy_delete(domain.lines, start, end))
        del plan.expect(DOMAIN)["responses"][utter]
    return plan
