"""The workbench's training-data editor on a copy of the real project files.

Every test works on ``data/`` and ``domain.yml`` copied to a temporary directory; the real
files are never written. The checks that matter most: an edit changes exactly the lines it
should (``difflib`` on the file text), Rasa still loads the result, and a refused edit
leaves every file byte-identical.
"""

from __future__ import annotations

import difflib
import re
import shutil
import threading
from pathlib import Path

import pytest

from bot.workbench.annotations import EntityMark, example_from_parts, parse_example
from bot.workbench.nlu_yaml import YamlFile, apply_edits, split_lines, tidy_delete
from bot.workbench.training_data import (
    EditConflict,
    Intent,
    IntentInUse,
    TrainingData,
)
from crm_bridge.errors import Conflict, InvalidInput, NotFound

PROJECT = Path(__file__).resolve().parents[2]


def _all_files(root: Path) -> dict[str, bytes]:
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in (root / "data").rglob("*.yml")}
    files["domain.yml"] = (root / "domain.yml").read_bytes()
    return files


@pytest.fixture
def root(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copytree(PROJECT / "data", project / "data")
    shutil.copy(PROJECT / "domain.yml", project / "domain.yml")
    return project


@pytest.fixture
def data(root: Path) -> TrainingData:
    return TrainingData(root)


def _changes(before: dict[str, bytes], after: dict[str, bytes]) -> dict[str, list[str]]:
    """Per changed file, the diff's lines that start with '+' or '-' (no headers)."""
    out = {}
    for rel in sorted(set(before) | set(after)):
        old = before.get(rel, b"").decode().splitlines(keepends=True)
        new = after.get(rel, b"").decode().splitlines(keepends=True)
        lines = [
            line
            for line in difflib.unified_diff(old, new, n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))
        ]
        if lines:
            out[rel] = lines
    return out


def _rasa_loads(root: Path, stories: bool = False) -> None:
    """Rasa reads the NLU data and the domain (and, if asked, every rule and story)."""
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.training_data.story_reader.yaml_story_reader import YAMLStoryReader
    from rasa.shared.nlu.training_data.loading import load_data

    nlu = load_data(str(root / "data" / "nlu"))
    domain = Domain.load(str(root / "domain.yml"))
    declared = set(domain.intents)
    for intent in nlu.intents:
        assert intent.partition("/")[0] in declared, intent
    for folder in ("rules", "stories") if stories else ():
        for path in sorted((root / "data" / folder).glob("*.yml")):
            steps = YAMLStoryReader(domain).read_from_file(str(path))
            assert steps, path


def _entry(intent: Intent, text: str) -> int:
    return next(e.index for e in intent.examples if e.text == text)


# -- reading ------------------------------------------------------------------------


def test_every_file_reads_and_renders_byte_identically(root: Path) -> None:
    for rel, raw in _all_files(root).items():
        f = YamlFile.read(root, rel)
        assert apply_edits(f.lines, []).encode() == raw, rel


def test_reads_intents_examples_entities_and_responses(data: TrainingData) -> None:
    names = [intent.name for intent in data.intents()]
    assert names == sorted(names)
    assert {"greet", "inform", "faq/opening_hours", "out_of_scope"} <= set(names)
    assert "data/nlu/regex.yml" not in data.files()
    assert "data/nlu/basics.yml" in data.files()

    inform = data.intent("inform")
    assert inform.file == "data/nlu/inform.yml"
    both = inform.examples[_entry(inform, "[10001](order_number) and [alice@example.com](email)")]
    assert both.plain == "10001 and alice@example.com"
    assert both.entities == (
        EntityMark(0, 5, "order_number"),
        EntityMark(10, 27, "email"),
    )
    assert (data.intent("greet").response or "").startswith("Hi! I'm the Rapport")
    assert (data.intent("faq/opening_hours").response or "").startswith("Our customer service")
    assert data.intent("thank").response is None  # its answer is utter_you_are_welcome
    with pytest.raises(NotFound):
        data.intent("no_such_intent")


def test_examples_agree_with_rasas_own_parser(data: TrainingData) -> None:
    from rasa.shared.nlu.training_data import entities_parser

    for intent in data.intents():
        for example in intent.examples:
            expected = entities_parser.find_entities_in_training_example(example.text)
            assert example.plain == entities_parser.replace_entities(example.text)
            assert [(e["start"], e["end"], e["entity"]) for e in expected] == [
                (m.start, m.end, m.entity) for m in example.entities
            ]


def test_duplicate_and_shared_flags(data: TrainingData) -> None:
    greet = data.intent("greet")
    greet = data.add_example("greet", "Hi  There", greet.version)
    flagged = [e.text for e in greet.examples if e.duplicate]
    assert flagged == ["hi there", "Hi  There"]

    goodbye = data.add_example("goodbye", "thanks", data.intent("goodbye").version)
    assert goodbye.examples[-1].shared_with == ("thank",)
    assert not goodbye.examples[-1].duplicate
    thank = data.intent("thank")
    assert thank.examples[_entry(thank, "thanks")].shared_with == ("goodbye",)


def test_version_changes_with_the_examples(data: TrainingData) -> None:
    before = data.intent("greet").version
    assert data.intent("greet").version == before
    after = data.add_example("greet", "good day", before).version
    assert after != before


# -- examples -----------------------------------------------------------------------


def test_adding_an_example_to_any_intent_adds_exactly_one_line(
    root: Path, data: TrainingData
) -> None:
    for intent in data.intents():
        before = _all_files(root)
        updated = data.add_example(intent.name, "a brand new way to say it", intent.version)
        assert _changes(before, _all_files(root)) == {
            intent.file: ["+      - a brand new way to say it\n"]
        }
        assert updated.examples[-1].text == "a brand new way to say it"
        assert len(updated.examples) == len(intent.examples) + 1
    _rasa_loads(root)


def test_edit_example_replaces_its_line_and_keeps_annotations(
    root: Path, data: TrainingData
) -> None:
    intent = data.intent("order_status")
    index = _entry(intent, "where is my order [10001](order_number)?")
    before = _all_files(root)
    text = 'is [10002](order_number) with [DHL]{"entity": "email", "value": "dhl", "role": "x"}?'
    updated = data.edit_example("order_status", index, text, intent.version)
    assert _changes(before, _all_files(root)) == {
        "data/nlu/orders.yml": [
            "-      - where is my order [10001](order_number)?\n",
            f"+      - {text}\n",
        ]
    }
    edited = updated.examples[index]
    assert edited.text == text
    assert edited.plain == "is 10002 with DHL?"
    assert edited.entities == (
        EntityMark(3, 8, "order_number"),
        EntityMark(14, 17, "email", "dhl", "x"),
    )
    _rasa_loads(root)


def test_an_unchanged_edit_writes_nothing(root: Path, data: TrainingData) -> None:
    before = _all_files(root)
    intent = data.intent("greet")
    data.edit_example("greet", 0, intent.examples[0].text, intent.version)
    assert _all_files(root) == before


def test_delete_example_removes_one_line(root: Path, data: TrainingData) -> None:
    intent = data.intent("complaint")
    before = _all_files(root)
    updated = data.delete_example("complaint", 3, intent.version)
    assert _changes(before, _all_files(root)) == {
        "data/nlu/complaints.yml": ["-      - this is unacceptable\n"]
    }
    assert [e.text for e in updated.examples] == [e.text for e in intent.examples if e.index != 3]
    assert [e.index for e in updated.examples] == list(range(len(intent.examples) - 1))


def test_move_example_to_another_file_keeps_its_annotation(root: Path, data: TrainingData) -> None:
    inform, status = data.intent("inform"), data.intent("order_status")
    before = _all_files(root)
    updated = data.move_example("inform", 0, "order_status", inform.version, status.version)
    assert _changes(before, _all_files(root)) == {
        "data/nlu/inform.yml": ["-      - [10001](order_number)\n"],
        "data/nlu/orders.yml": ["+      - [10001](order_number)\n"],
    }
    assert updated.name == "inform"
    moved = data.intent("order_status").examples[-1]
    assert moved.text == "[10001](order_number)"
    assert moved.entities == (EntityMark(0, 5, "order_number"),)
    _rasa_loads(root)


def test_move_example_within_one_file(root: Path, data: TrainingData) -> None:
    greet = data.intent("greet")
    before = _all_files(root)
    data.move_example("greet", _entry(greet, "hello again"), "goodbye", greet.version)
    changes = _changes(before, _all_files(root))
    assert changes == {"data/nlu/basics.yml": ["-      - hello again\n", "+      - hello again\n"]}
    assert data.intent("goodbye").examples[-1].text == "hello again"
    assert "hello again" not in [e.text for e in data.intent("greet").examples]


def test_move_refuses_a_stale_target_and_an_example_the_target_has(
    root: Path, data: TrainingData
) -> None:
    greet, goodbye = data.intent("greet"), data.intent("goodbye")
    data.add_example("goodbye", "hi there", goodbye.version)
    before = _all_files(root)
    with pytest.raises(EditConflict):
        data.move_example("greet", 0, "goodbye", greet.version, goodbye.version)
    with pytest.raises(InvalidInput, match="already an example of goodbye"):
        data.move_example("greet", _entry(greet, "hi there"), "goodbye", greet.version)
    assert _all_files(root) == before


def test_the_last_example_cannot_be_deleted_or_moved(root: Path, data: TrainingData) -> None:
    created = data.create_intent("tiny", "data/nlu/basics.yml", ["just one"], None)
    before = _all_files(root)
    with pytest.raises(Conflict, match="last example"):
        data.delete_example("tiny", 0, created.version)
    with pytest.raises(Conflict, match="last example"):
        data.move_example("tiny", 0, "greet", created.version)
    assert _all_files(root) == before


def test_other_layouts_crlf_and_a_missing_last_newline_are_kept(root: Path) -> None:
    extra = root / "data" / "nlu" / "extra.yml"
    # No indentation before the dashes, CRLF line ends, no line end after the last line.
    text = 'version: "3.1"\r\nnlu:\r\n- intent: hello_extra\r\n  examples: |\r\n'
    text += "    - yo yo\r\n    - sup"
    extra.write_bytes(text.encode())
    data = TrainingData(root)
    data.add_example("hello_extra", "hiya", data.intent("hello_extra").version)
    text += "\r\n    - hiya\r\n"
    assert extra.read_bytes().decode() == text
    data.create_intent("bye_extra", "data/nlu/extra.yml", ["laters"], None)
    text += "\r\n- intent: bye_extra\r\n  examples: |\r\n    - laters\r\n"
    assert extra.read_bytes().decode() == text
    assert [e.text for e in data.intent("hello_extra").examples] == ["yo yo", "sup", "hiya"]


@pytest.mark.parametrize(
    ("text", "start", "end", "expected"),
    [
        # first item: the blank line after it goes, the parent line stays
        ("nlu:\n  - a\n\n  - b\n", 1, 2, "nlu:\n  - b\n"),
        # middle item: one separator stays
        ("nlu:\n  - a\n\n  - b\n\n  - c\n", 3, 4, "nlu:\n  - a\n\n  - c\n"),
        # last item of the file: no blank line is left dangling
        ("nlu:\n  - a\n\n  - b\n", 3, 4, "nlu:\n  - a\n"),
        # last item before the next section: the section keeps its blank line
        ("x:\n  - a\n  - b\n\ny: 1\n", 2, 3, "x:\n  - a\n\ny: 1\n"),
        ("x:\n  - a\n\n  - b\n\ny: 1\n", 3, 4, "x:\n  - a\n\ny: 1\n"),
        # a comment above the next item is never removed
        ("x:\n  - a\n  # about b\n  - b\n", 1, 2, "x:\n  # about b\n  - b\n"),
    ],
)
def test_tidy_delete_keeps_one_separator(text: str, start: int, end: int, expected: str) -> None:
    lines = split_lines(text)
    assert apply_edits(lines, [tidy_delete(lines, start, end)]) == expected


# -- intents ------------------------------------------------------------------------


def test_create_intent_adds_it_to_the_file_and_the_domain(root: Path, data: TrainingData) -> None:
    before = _all_files(root)
    created = data.create_intent(
        "ask_weather",
        "data/nlu/basics.yml",
        ["what's the weather like", "is it raining in [10001](order_number)"],
        'I can\'t look outside, sorry. Try a "weather" site.',
    )
    assert _changes(before, _all_files(root)) == {
        "data/nlu/basics.yml": [
            "+\n",
            "+  - intent: ask_weather\n",
            "+    examples: |\n",
            "+      - what's the weather like\n",
            "+      - is it raining in [10001](order_number)\n",
        ],
        "domain.yml": [
            "+  - ask_weather\n",
            "+  utter_ask_weather:\n",
            '+    - text: "I can\'t look outside, sorry. Try a \\"weather\\" site."\n',
        ],
    }
    assert created.file == "data/nlu/basics.yml"
    assert created.response == 'I can\'t look outside, sorry. Try a "weather" site.'
    assert [e.text for e in created.examples] == [
        "what's the weather like",
        "is it raining in [10001](order_number)",
    ]
    _rasa_loads(root)
    from rasa.shared.core.domain import Domain

    domain = Domain.load(str(root / "domain.yml"))
    assert "ask_weather" in domain.intents
    assert domain.responses["utter_ask_weather"][0]["text"].endswith('"weather" site.')


def test_create_retrieval_intent_reuses_its_group(root: Path, data: TrainingData) -> None:
    before = _all_files(root)
    data.create_intent("faq/loyalty", "data/nlu/faq.yml", ["do you have a loyalty card"], "No.")
    changes = _changes(before, _all_files(root))
    assert changes["domain.yml"] == ["+  utter_faq/loyalty:\n", '+    - text: "No."\n']
    assert data.intent("faq/loyalty").response == "No."
    _rasa_loads(root)


def test_create_refuses_a_name_that_exists(root: Path, data: TrainingData) -> None:
    before = _all_files(root)
    # An intent with examples, a retrieval intent, one declared only in the domain, a group.
    for name in ("greet", "faq/opening_hours", "inbound_too_long", "faq", "greet/x"):
        with pytest.raises(InvalidInput) as error:
            data.create_intent(name, "data/nlu/basics.yml", ["something new"], None)
        assert error.value.field == "name"
    with pytest.raises(InvalidInput, match="already has a response utter_anything_else"):
        data.create_intent("anything_else", "data/nlu/basics.yml", ["x"], "A reply.")
    with pytest.raises(InvalidInput) as error:
        data.create_intent("fresh", "data/nlu/regex.yml", ["x"], None)  # no intents there
    assert error.value.field == "file"
    assert _all_files(root) == before


def test_create_then_delete_leaves_every_file_as_it_was(root: Path, data: TrainingData) -> None:
    before = _all_files(root)
    for file in data.files():
        created = data.create_intent("scratch", file, ["one", "two"], "A reply.")
        data.delete_intent("scratch", created.version)
        assert _all_files(root) == before, file


def test_rename_follows_the_intent_everywhere(root: Path, data: TrainingData) -> None:
    before = _all_files(root)
    renamed = data.rename_intent("goodbye", "farewell", data.intent("goodbye").version)
    assert renamed.name == "farewell"
    assert renamed.response == "Goodbye, and thanks for shopping with us!"
    changes = _changes(before, _all_files(root))
    assert changes["data/nlu/basics.yml"] == ["-  - intent: goodbye\n", "+  - intent: farewell\n"]
    assert changes["data/rules/basics.yml"] == [
        "-      - intent: goodbye\n",
        "-      - action: utter_goodbye\n",
        "+      - intent: farewell\n",
        "+      - action: utter_farewell\n",
    ]
    assert "+  - farewell\n" in changes["domain.yml"]
    assert "+  utter_farewell:\n" in changes["domain.yml"]
    assert any("not_intent: [" in line for line in changes["domain.yml"])
    assert changes["data/stories/conversations.yml"].count("+      - intent: farewell\n") == 2
    # Every changed line is the old line with the names swapped, and nothing else changed.
    for lines in changes.values():
        removed = [line[1:] for line in lines if line.startswith("-")]
        added = [line[1:] for line in lines if line.startswith("+")]
        swapped = [
            re.sub(
                r"(?<![\w/])goodbye(?![\w/])",
                "farewell",
                line.replace("utter_goodbye", "utter_farewell"),
            )
            for line in removed
        ]
        assert added == swapped
    with pytest.raises(NotFound):
        data.intent("goodbye")
    _rasa_loads(root, stories=True)


def test_rename_updates_slot_mappings_and_buttons(root: Path, data: TrainingData) -> None:
    before = _all_files(root)
    data.rename_intent("order_status", "track_order", data.intent("order_status").version)
    domain = _changes(before, _all_files(root))["domain.yml"]
    assert "+  - track_order\n" in domain
    assert '+          payload: "/track_order"\n' in domain
    assert any("not_intent: [track_order, cancel_order" in line for line in domain)
    assert not any("order_status," in line for line in domain if line.startswith("+"))
    _rasa_loads(root, stories=True)
    # And back again: byte for byte the original files.
    data.rename_intent("track_order", "order_status", data.intent("track_order").version)
    assert _all_files(root) == before


def test_rename_a_retrieval_intent_and_its_response(root: Path, data: TrainingData) -> None:
    before = _all_files(root)
    data.rename_intent("faq/warranty", "faq/guarantee", data.intent("faq/warranty").version)
    assert _changes(before, _all_files(root)) == {
        "data/nlu/faq.yml": ["-  - intent: faq/warranty\n", "+  - intent: faq/guarantee\n"],
        "domain.yml": ["-  utter_faq/warranty:\n", "+  utter_faq/guarantee:\n"],
    }
    with pytest.raises(InvalidInput):
        data.rename_intent("faq/guarantee", "guarantee", data.intent("faq/guarantee").version)
    _rasa_loads(root)


def test_rename_refuses_an_existing_or_invalid_name(root: Path, data: TrainingData) -> None:
    before = _all_files(root)
    version = data.intent("thank").version
    for new in ("greet", "inbound_too_long", "thank you", "Thank", "", "restart", "x" * 81):
        with pytest.raises(InvalidInput) as error:
            data.rename_intent("thank", new, version)
        assert error.value.field == "name"
    assert _all_files(root) == before


def test_delete_is_refused_while_rules_or_stories_use_the_intent(
    root: Path, data: TrainingData
) -> None:
    before = _all_files(root)
    with pytest.raises(IntentInUse) as error:
        data.delete_intent("greet", data.intent("greet").version)
    message = str(error.value)
    assert "data/rules/basics.yml (rule 'greet')" in message
    assert "data/stories/conversations.yml" in message
    assert "response utter_out_of_scope" not in message  # greet has no button pointing at it
    with pytest.raises(IntentInUse, match="slot email"):
        data.delete_intent("update_contact", data.intent("update_contact").version)
    assert isinstance(error.value, Conflict)
    assert _all_files(root) == before


def test_delete_intent_removes_its_block_and_response(root: Path, data: TrainingData) -> None:
    before = _all_files(root)
    data.delete_intent("faq/gift_cards", data.intent("faq/gift_cards").version)
    changes = _changes(before, _all_files(root))
    assert set(changes) == {"data/nlu/faq.yml", "domain.yml"}
    assert changes["data/nlu/faq.yml"][0] == "-  - intent: faq/gift_cards\n"
    assert all(line.startswith("-") for line in changes["data/nlu/faq.yml"])
    assert changes["domain.yml"] == [
        "-  utter_faq/gift_cards:\n",
        "-    - text: "
        + before["domain.yml"]
        .decode()
        .split("utter_faq/gift_cards:\n    - text: ")[1]
        .split("\n")[0]
        + "\n",
    ]
    assert "faq/gift_cards" not in [intent.name for intent in data.intents()]
    _rasa_loads(root, stories=True)


def test_a_stale_version_is_refused_and_the_first_edit_kept(root: Path, data: TrainingData) -> None:
    opened = data.intent("greet")
    data.add_example("greet", "first writer", opened.version)
    after_first = _all_files(root)
    for attempt in (
        lambda: data.add_example("greet", "second writer", opened.version),
        lambda: data.edit_example("greet", 0, "second writer", opened.version),
        lambda: data.delete_example("greet", 0, opened.version),
        lambda: data.move_example("greet", 0, "goodbye", opened.version),
        lambda: data.rename_intent("greet", "hello", opened.version),
        lambda: data.delete_intent("greet", opened.version),
    ):
        with pytest.raises(EditConflict) as error:
            attempt()
        assert str(error.value) == (
            "Someone else changed intent greet since you opened it; your edit was not saved. "
            "Reload to see their change, then make yours again."
        )
    assert _all_files(root) == after_first
    assert data.intent("greet").examples[-1].text == "first writer"


def test_concurrent_writers_lose_nothing(root: Path) -> None:
    def writer(number: int) -> None:
        data = TrainingData(root)  # its own instance, as another request or process would
        while True:
            try:
                data.add_example("greet", f"greeting number {number}", data.intent("greet").version)
                return
            except EditConflict:
                continue

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    texts = [e.text for e in TrainingData(root).intent("greet").examples]
    assert sorted(t for t in texts if t.startswith("greeting number")) == [
        f"greeting number {n}" for n in range(8)
    ]


# -- validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("two\nlines", "single line"),
        ("a\rb", "single line"),
        ("tab\there", "control character"),
        ("odd\u2028separator", "control character"),
        ("bom\ufeff", "control character"),
        ("x" * 501, "longer than 500"),
        ("order [10001](order_number", "'[' or ']'"),
        ("order [10001] please", "'[' or ']'"),
        ("order 10001](order_number)", "'[' or ']'"),
        ('order [10001]{"entity": "order_number", "colour": "red"}', "unknown keys"),
        ("order [10001]{entity: order_number}", "not valid JSON"),
        ('order [10001]{"value": "1"}', '"entity"'),
        ("my [red](colour) jacket", "colour is not declared"),
        ("hi there", "already an example of greet"),
    ],
)
def test_malformed_examples_are_refused_and_nothing_changes(
    root: Path, data: TrainingData, text: str, reason: str
) -> None:
    before = _all_files(root)
    greet = data.intent("greet")
    with pytest.raises(InvalidInput, match=reason.replace("[", r"\[").replace("]", r"\]")) as error:
        data.add_example("greet", text, greet.version)
    assert error.value.field == "text"
    with pytest.raises(InvalidInput):
        data.edit_example("greet", 0, text, greet.version)
    assert _all_files(root) == before


@pytest.mark.parametrize(
    ("name", "examples", "response", "field"),
    [
        ("ask weather", ["what's the weather"], None, "name"),
        ("AskWeather", ["what's the weather"], None, "name"),
        ("faq/a/b", ["what's the weather"], None, "name"),
        ("ask_weather", [], None, "examples"),
        ("ask_weather", [""], None, "examples"),
        ("ask_weather", ["two\nlines"], None, "examples"),
        ("ask_weather", ["[sun](weather) today"], None, "examples"),
        ("ask_weather", ["same", "same"], None, "examples"),
        ("ask_weather", ["fine"], "   ", "response"),
        ("ask_weather", ["fine"], "line\u2028break", "response"),
        ("greet", ["fine"], None, "name"),
        ("ask_weather", ["fine"], None, "file"),
    ],
)
def test_malformed_intents_are_refused_and_nothing_changes(
    root: Path,
    data: TrainingData,
    name: str,
    examples: list[str],
    response: str | None,
    field: str,
) -> None:
    before = _all_files(root)
    file = "data/nlu/nowhere.yml" if field == "file" else "data/nlu/basics.yml"
    with pytest.raises(InvalidInput) as error:
        data.create_intent(name, file, examples, response)
    assert error.value.field == field
    assert _all_files(root) == before


# -- annotations --------------------------------------------------------------------


def test_parse_example_reads_every_annotation_form() -> None:
    plain, marks = parse_example(
        'fly [LA]{"entity": "city", "role": "to", "value": "Los Angeles"} from '
        '[NYC](city:New York) with [Bob][{"entity": "name"}, {"entity": "person"}]'
    )
    assert plain == "fly LA from NYC with Bob"
    assert marks == (
        EntityMark(4, 6, "city", "Los Angeles", "to"),
        EntityMark(12, 15, "city", "New York"),
        EntityMark(21, 24, "name"),
        EntityMark(21, 24, "person"),
    )


def test_example_from_parts_round_trips() -> None:
    plain = "order 10001 for alice@example.com to LA"
    marks = [
        EntityMark(6, 11, "order_number"),
        EntityMark(16, 33, "email", "alice@example.com"),
        EntityMark(37, 39, "city", "Los Angeles", "to", "trip"),
    ]
    text = example_from_parts(plain, marks)
    assert text == (
        "order [10001](order_number) for [alice@example.com](email) to "
        '[LA]{"entity": "city", "value": "Los Angeles", "role": "to", "group": "trip"}'
    )
    assert parse_example(text) == (plain, (marks[0], EntityMark(16, 33, "email"), marks[2]))
    assert example_from_parts("plain text", []) == "plain text"
    both = example_from_parts("Bob", [EntityMark(0, 3, "person"), EntityMark(0, 3, "name", "B")])
    assert both == '[Bob][{"entity": "name", "value": "B"}, {"entity": "person"}]'
    assert parse_example(both)[1] == (EntityMark(0, 3, "name", "B"), EntityMark(0, 3, "person"))


@pytest.mark.parametrize(
    ("plain", "marks"),
    [
        ("a [b]", []),
        ("abc", [EntityMark(0, 4, "x")]),
        ("abc", [EntityMark(0, 2, "x"), EntityMark(1, 3, "y")]),
        ("abc", [EntityMark(0, 3, "x", "va}lue")]),
        ("abc", [EntityMark(0, 3, "x", "v", "r"), EntityMark(0, 3, "x", "v]")]),
    ],
)
def test_example_from_parts_refuses_what_cannot_be_written(
    plain: str, marks: list[EntityMark]
) -> None:
    with pytest.raises(InvalidInput):
        example_from_parts(plain, marks)
