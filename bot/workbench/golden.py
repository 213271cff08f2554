"""Golden conversations: real conversations kept as Rasa test stories, which every
candidate model must replay exactly before it may serve.

* :func:`story_from_conversation` turns a CRM conversation (an Interaction) into a test
  story, from the events in Rasa's tracker store; :func:`story_from_tracker_events` does
  the conversion on the events themselves, with Rasa's own ``YAMLStoryWriter``.
* :func:`save_golden`, :func:`list_golden`, :func:`load_golden` and :func:`delete_golden`
  keep them as ``<name>.yml`` files in the golden folder (``tests/golden/`` by default).
* :func:`run_golden` replays them against a model with ``rasa test core --e2e``: the
  customers' words go through the candidate's NLU too, so a story fails when an intent,
  an entity or an action comes out differently.

Stories are masked by default (:mod:`crm_bridge.masking`): emails, phone numbers, order
numbers and customers' names become fixed stand-ins, in the text, the entities and the
slots alike, because golden files are committed with the project. Nothing here logs a
story: they hold customers' words.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import os
import re
import subprocess
import sys
import tempfile
import unicodedata
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.settings import PROJECT_ROOT
from crm_bridge.errors import Conflict, InvalidInput, NotFound, Unavailable

if TYPE_CHECKING:
    from rasa.core.tracker_store import TrackerStore
    from rasa.shared.core.events import Event, UserUttered
    from sqlalchemy.orm import sessionmaker

    from crm_bridge.masking import Masker

logger = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,60}$")
DEFAULT_GOLDEN_DIR = PROJECT_ROOT / "tests" / "golden"
# Loading a full model takes up to a minute; then every story is parsed and predicted.
RUN_TIMEOUT_SECONDS = 900.0
# A session_started event and the Interaction's key for it agree to the microsecond;
# the tolerance only absorbs float formatting and datetime rounding.
SESSION_START_TOLERANCE = 0.001
# Set by action_session_start from the channel's metadata: not part of the dialogue.
SESSION_METADATA_SLOT = "session_started_metadata"
OUTPUT_TAIL_CHARS = 4000

__all__ = [
    "DEFAULT_GOLDEN_DIR",
    "GoldenResult",
    "GoldenRunError",
    "delete_golden",
    "list_golden",
    "load_golden",
    "open_tracker_store",
    "run_golden",
    "save_golden",
    "story_from_conversation",
    "story_from_tracker_events",
]


@dataclasses.dataclass(frozen=True)
class GoldenResult:
    """Which golden conversations a model replayed exactly (``passed``) and which not;
    ``details`` shows the failed stories with Rasa's ``# predicted:`` notes."""

    passed: list[str]
    failures: list[str]
    details: str


class GoldenRunError(Unavailable):
    """``rasa test core`` could not run (timeout, crash, unreadable model).

    ``output`` is the tail of its output, for a trainer's screen only (it may quote
    stories, so it is never logged)."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


# --------------------------------------------------------------------------- building


def story_from_tracker_events(
    events: list[dict[str, Any]],
    session_start: float,
    name: str,
    masker: Masker | None = None,
) -> str:
    """One conversation session as a Rasa YAML test story named ``name``.

    The session runs from the first ``session_started`` event at or after
    ``session_start`` to the next one (a tracker without session starts: from the first
    event at or after ``session_start``). Reverted turns are left out, customer messages
    that were intent shortcuts ("/greet") are written as the intent only, and with a
    ``masker`` personal data is replaced by its stand-ins. Raises InvalidInput when the
    session has no customer message.
    """
    from rasa.shared.core.events import UserUttered
    from rasa.shared.core.training_data.structures import Story

    dialogue: list[Event] = []
    for event in _applied(_deserialised(_session(events, session_start))):
        if isinstance(event, UserUttered):
            user = _user_step(event, masker)
            if user is not None:
                dialogue.append(user)
        else:
            step = _other_step(event, masker)
            if step is not None:
                dialogue.append(step)
    if not any(isinstance(event, UserUttered) for event in dialogue):
        raise InvalidInput("conversation", "This conversation has no customer message to test.")
    return _dump_test_story(Story.from_events(dialogue, name).story_steps)


async def story_from_conversation(
    interaction_id: int,
    crm_session_factory: sessionmaker,
    tracker_store: TrackerStore,
    mask: bool = True,
) -> str:
    """The CRM conversation ``interaction_id`` as a test story named
    ``conversation-<id>``, from the events Rasa's tracker store kept for it (masked
    unless ``mask`` is false). NotFound when the CRM or Rasa no longer has it."""
    sender_id, session_start, masker = await asyncio.to_thread(
        _interaction_session, interaction_id, crm_session_factory, mask
    )
    tracker = await tracker_store.retrieve_full_tracker(sender_id)
    if tracker is None:
        raise NotFound("Rasa's tracker store has no events for this conversation any more.")
    events = [event.as_dict() for event in tracker.events]
    return story_from_tracker_events(
        events, session_start, f"conversation-{interaction_id}", masker=masker
    )


def open_tracker_store(domain_path: Path | None = None) -> TrackerStore:
    """Rasa's tracker store as the Rasa server opens it (Redis or SQL, from the settings),
    with the project's domain so that slots replay without complaints."""
    from rasa.shared.core.domain import Domain

    from bot.stores import EnvTrackerStore

    domain = Domain.load(str(domain_path or PROJECT_ROOT / "domain.yml"))
    store: TrackerStore = EnvTrackerStore(domain=domain)
    return store


def _interaction_session(
    interaction_id: int, factory: sessionmaker, mask: bool
) -> tuple[str, float, Masker | None]:
    from crm_bridge import models
    from crm_bridge.db import unit_of_work
    from crm_bridge.masking import Masker

    with unit_of_work(factory) as session:
        interaction = session.get(models.Interaction, interaction_id)
        if interaction is None:
            raise NotFound(f"There is no conversation {interaction_id}.")
        try:
            # The key is the session_started timestamp itself, to the microsecond.
            start = float(interaction.session_key)
        except (TypeError, ValueError):
            start = interaction.started_at.timestamp()
        masker = Masker.from_session(session) if mask else None
        return str(interaction.sender_id), start, masker


def _session(events: list[dict[str, Any]], session_start: float) -> list[dict[str, Any]]:
    earliest = session_start - SESSION_START_TOLERANCE

    def at_or_after(event: Mapping[str, Any]) -> bool:
        timestamp = event.get("timestamp")
        return isinstance(timestamp, (int, float)) and timestamp >= earliest

    starts = [i for i, event in enumerate(events) if event.get("event") == "session_started"]
    begin = next((i for i in starts if at_or_after(events[i])), None)
    if begin is None:
        begin = next((i for i, event in enumerate(events) if at_or_after(event)), len(events))
    end = next((i for i in starts if i > begin), len(events))
    return events[begin:end]


def _deserialised(events: Iterable[dict[str, Any]]) -> list[Event]:
    from rasa.shared.core.events import Event

    parsed = (Event.from_parameters(dict(event)) for event in events)
    return [event for event in parsed if event is not None]


def _applied(events: list[Event]) -> list[Event]:
    # As the tracker replays them: reverted turns are gone. (Rasa's own applied_events
    # also folds repeated form executions, which a test story must keep.)
    from rasa.shared.core.events import (
        ActionExecuted,
        ActionReverted,
        Restarted,
        UserUtteranceReverted,
        UserUttered,
    )

    def undo_till(kind: type, done: list[Event]) -> None:
        while done:
            if isinstance(done.pop(), kind):
                return

    applied: list[Event] = []
    for event in events:
        if isinstance(event, Restarted):
            applied = []
        elif isinstance(event, ActionReverted):
            undo_till(ActionExecuted, applied)
        elif isinstance(event, UserUtteranceReverted):
            undo_till(UserUttered, applied)
            undo_till(ActionExecuted, applied)
        else:
            applied.append(event)
    return applied


def _user_step(event: UserUttered, masker: Masker | None) -> UserUttered | None:
    """A fresh user event with only what a test story holds: the text (None for an
    intent shortcut), the intent and the entities (masked with a masker)."""
    from rasa.shared.core.events import UserUttered

    intent = {
        key: event.intent[key]
        for key in ("name", "full_retrieval_intent_name")
        if event.intent.get(key)
    }
    text: str | None = event.text or None
    entities = [dict(entity) for entity in event.entities]
    if text is not None and text.startswith("/"):
        text = None
    if text is not None:
        # Rasa would read the customer's own "[..](..)" as an entity annotation.
        text = text.translate(str.maketrans("[]", "()"))
        if masker is not None:
            text, entities = _masked_message(text, entities, masker)
    if masker is not None:
        for entity in entities:
            entity["value"] = _masked_value(entity.get("value"), masker)
    if not text and not intent.get("name"):
        return None
    return UserUttered(text, intent, entities)


def _other_step(event: Event, masker: Masker | None) -> Event | None:
    from rasa.shared.core.events import ActionExecuted, ActiveLoop, SlotSet

    if isinstance(event, SlotSet):
        if event.key == SESSION_METADATA_SLOT:
            return None
        value = _masked_value(event.value, masker) if masker is not None else event.value
        return SlotSet(event.key, value)
    if isinstance(event, ActionExecuted):
        return ActionExecuted(event.action_name, action_text=event.action_text)
    if isinstance(event, ActiveLoop):
        return ActiveLoop(event.name)
    return None  # bot messages, reminders, ...: a test story does not hold them


# --------------------------------------------------------------------------- masking


def _masked_text(text: str, masker: Masker) -> str:
    """``text`` with personal data replaced by plain stand-ins ("customer@example.com")."""
    from crm_bridge.masking import SURROGATES

    text = unicodedata.normalize("NFC", text)
    pieces, position = [], 0
    for span in masker.spans(text):
        # "[customer@example.com](email)" -> "customer@example.com": Rasa's writer
        # annotates the entities itself.
        stand_in = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", SURROGATES[span.kind])
        pieces += [text[position : span.start], stand_in]
        position = span.end
    return "".join(pieces) + text[position:]


def _masked_message(
    text: str, entities: list[dict[str, Any]], masker: Masker
) -> tuple[str, list[dict[str, Any]]]:
    """The masked text, and the entities moved to where their (masked) words now are:
    the text is masked piece by piece between entity boundaries."""
    entities = [
        e
        for e in entities
        if isinstance(e.get("start"), int)
        and isinstance(e.get("end"), int)
        and 0 <= e["start"] <= e["end"] <= len(text)
    ]
    cuts = sorted({0, len(text), *(e["start"] for e in entities), *(e["end"] for e in entities)})
    masked, moved_to = "", {0: 0}
    for start, end in itertools.pairwise(cuts):
        masked += _masked_text(text[start:end], masker)
        moved_to[end] = len(masked)
    return masked, [
        {**e, "start": moved_to[e["start"]], "end": moved_to[e["end"]]} for e in entities
    ]


def _masked_value(value: Any, masker: Masker | None) -> Any:
    if masker is None:
        return value
    if isinstance(value, str):
        return _masked_text(value, masker)
    if isinstance(value, list):
        return [_masked_value(item, masker) for item in value]
    if isinstance(value, dict):
        return {key: _masked_value(item, masker) for key, item in value.items()}
    return value


def _dump_test_story(story_steps: list[Any]) -> str:
    """Rasa's ``YAMLStoryWriter`` in test-story mode, with the customer's words before the
    intent (as people write test stories) and the entities of intent-only steps kept."""
    # Imported here: importing this module (to list golden files) must not load Rasa.
    from rasa.shared.core.training_data.story_reader.yaml_story_reader import (
        KEY_ENTITIES,
        KEY_USER_INTENT,
        KEY_USER_MESSAGE,
    )
    from rasa.shared.core.training_data.story_writer.yaml_story_writer import YAMLStoryWriter
    from ruamel.yaml.comments import CommentedMap

    class TestStoryWriter(YAMLStoryWriter):
        @staticmethod
        def process_user_utterance(
            user_utterance: UserUttered, is_test_story: bool = False
        ) -> CommentedMap:
            written = YAMLStoryWriter.process_user_utterance(user_utterance, is_test_story)
            step = CommentedMap()
            for key in (KEY_USER_MESSAGE, KEY_USER_INTENT, KEY_ENTITIES):
                if key in written:
                    step[key] = written[key]
            if not user_utterance.text and user_utterance.entities:
                step[KEY_ENTITIES] = [
                    {entity["entity"]: entity.get("value")} for entity in user_utterance.entities
                ]
            return step

    return TestStoryWriter().dumps(story_steps, is_test_story=True)


# --------------------------------------------------------------------------- the folder


def _checked_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise InvalidInput(
            "name",
            "A golden conversation's name is 1-61 lower-case letters, digits and dashes, "
            "starting with a letter or digit.",
        )
    return name


def _validated_story(story_yaml: str) -> dict[str, Any]:
    """The parsed story file; InvalidInput unless it is one valid Rasa test story."""
    import rasa.shared.utils.io
    from rasa.shared.core.training_data.story_reader.yaml_story_reader import YAMLStoryReader
    from rasa.shared.exceptions import RasaException

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            steps = YAMLStoryReader(source_name="test_golden.yml").read_from_string(story_yaml)
            content = rasa.shared.utils.io.read_yaml(story_yaml)
        except RasaException as error:
            first_line = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
            raise InvalidInput(
                "story", f"This is not a valid Rasa test story: {first_line}"
            ) from None
    problems = [str(w.message) for w in caught if "Issue found" in str(w.message)]
    if problems:
        raise InvalidInput("story", f"The story has a problem: {problems[0][:300]}")
    stories = content.get("stories") if isinstance(content, dict) else None
    if not isinstance(stories, list) or len(stories) != 1 or not steps:
        raise InvalidInput("story", "A golden conversation file holds exactly one story.")
    if set(content) - {"version", "stories"}:
        raise InvalidInput("story", "A golden conversation file holds a story and nothing else.")
    if not stories[0].get("steps"):
        raise InvalidInput("story", "The story has no steps.")
    return dict(content)


def save_golden(golden_dir: Path, name: str, story_yaml: str, overwrite: bool = False) -> Path:
    """Write ``story_yaml`` as ``golden_dir/<name>.yml`` after checking it is exactly one
    valid Rasa test story; atomically, so a reader never sees half a file. Conflict when
    the name is taken (unless ``overwrite``)."""
    _checked_name(name)
    _validated_story(story_yaml)
    golden_dir.mkdir(parents=True, exist_ok=True)
    target = golden_dir / f"{name}.yml"
    if target.exists() and not overwrite:
        raise Conflict(f"There already is a golden conversation called {name}.")
    handle, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=golden_dir)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(story_yaml if story_yaml.endswith("\n") else story_yaml + "\n")
        if overwrite:
            os.replace(temporary, target)
        else:
            try:
                # link() refuses an existing target: two trainers saving one name at
                # once cannot overwrite each other.
                os.link(temporary, target)
            except FileExistsError:
                raise Conflict(f"There already is a golden conversation called {name}.") from None
    finally:
        Path(temporary).unlink(missing_ok=True)
    return target


def list_golden(golden_dir: Path) -> list[str]:
    """The golden conversations' names, sorted (none when the folder does not exist)."""
    if not golden_dir.is_dir():
        return []
    return sorted(
        path.stem
        for path in golden_dir.glob("*.yml")
        if path.is_file() and NAME_PATTERN.fullmatch(path.stem)
    )


def load_golden(golden_dir: Path, name: str) -> str:
    """The story of one golden conversation (NotFound when there is none by that name)."""
    path = golden_dir / f"{_checked_name(name)}.yml"
    if not path.is_file():
        raise NotFound(f"There is no golden conversation called {name}.")
    return path.read_text(encoding="utf-8")


def delete_golden(golden_dir: Path, name: str) -> None:
    """Delete one golden conversation (NotFound when there is none by that name)."""
    path = golden_dir / f"{_checked_name(name)}.yml"
    try:
        path.unlink()
    except FileNotFoundError:
        raise NotFound(f"There is no golden conversation called {name}.") from None


# --------------------------------------------------------------------------- running


def run_golden(
    model_path: Path,
    golden_dir: Path | None = None,
    root: Path = PROJECT_ROOT,
    timeout: float = RUN_TIMEOUT_SECONDS,
) -> GoldenResult:
    """Replay every golden conversation against ``model_path`` (``rasa test core --e2e``
    in a subprocess, from ``root``). Files that are no longer valid stories count as
    failures. Raises GoldenRunError when Rasa cannot run or runs out of ``timeout``."""
    golden_dir = golden_dir or root / "tests" / "golden"
    names = list_golden(golden_dir)
    if not names:
        return GoldenResult([], [], "There are no golden conversations.")
    with tempfile.TemporaryDirectory(prefix="golden-") as scratch:
        stories, out = Path(scratch) / "stories", Path(scratch) / "out"
        stories.mkdir()
        broken = _stage_stories(golden_dir, names, stories)
        runnable = [name for name in names if name not in broken]
        if not runnable:
            return GoldenResult([], sorted(broken), _broken_details(broken))
        _run_rasa_test(model_path, stories, out, root, timeout)
        failed = _story_names(out / "failed_test_stories.yml")
        succeeded = _story_names(out / "successful_test_stories.yml")
        report = (out / "failed_test_stories.yml").read_text(encoding="utf-8")
    passed = [name for name in runnable if name in succeeded and name not in failed]
    # A story Rasa did not report either way did not replay: that is no pass.
    failures = sorted(set(names) - set(passed))
    details = report if failed else f"All {len(passed)} golden conversations passed."
    if broken:
        details = f"{_broken_details(broken)}\n{details}"
    return GoldenResult(passed, failures, details)


def _stage_stories(golden_dir: Path, names: list[str], stories: Path) -> dict[str, str]:
    """Copy each valid golden story as ``test_<name>.yml`` (Rasa's e2e test prefix), its
    story renamed after the file so Rasa's report names it; returns the invalid ones."""
    import rasa.shared.utils.io

    broken: dict[str, str] = {}
    for name in names:
        try:
            content = _validated_story((golden_dir / f"{name}.yml").read_text(encoding="utf-8"))
        except InvalidInput as error:
            broken[name] = error.message
            continue
        content["stories"][0]["story"] = name
        rasa.shared.utils.io.write_yaml(content, stories / f"test_{name}.yml", True)
    return broken


def _broken_details(broken: Mapping[str, str]) -> str:
    return "\n".join(f"{name}: {problem}" for name, problem in sorted(broken.items()))


def _run_rasa_test(model_path: Path, stories: Path, out: Path, root: Path, timeout: float) -> None:
    from crm_bridge.settings import process_environment

    command = [
        sys.executable, "-m", "rasa", "test", "core", "--e2e", "--no-plot", "--successes",
        "--stories", str(stories), "--model", str(model_path), "--out", str(out),
    ]  # fmt: skip
    env = process_environment()
    env["RASA_TELEMETRY_ENABLED"] = "false"
    # The model's custom components (bot.components...) load from this project.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    try:
        finished = subprocess.run(  # noqa: S603
            command, cwd=root, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as error:
        output = _tail(error.stdout, error.stderr)
        raise GoldenRunError(
            f"The golden conversations took over {timeout:.0f} s.", output
        ) from None
    output = _tail(finished.stdout, finished.stderr)
    # `rasa test` reports some failures (no model, no Core model) only in its output and
    # exits with 0: the report file is the proof that it ran.
    if finished.returncode != 0 or not (out / "failed_test_stories.yml").exists():
        logger.warning(
            "rasa test core for the golden conversations failed (exit %s)", finished.returncode
        )
        raise GoldenRunError(
            f"Rasa could not replay the golden conversations (exit {finished.returncode}).",
            output,
        )


def _tail(*outputs: str | bytes | None) -> str:
    text = "\n".join(
        part.decode(errors="replace") if isinstance(part, bytes) else part
        for part in outputs
        if part
    )
    return text[-OUTPUT_TAIL_CHARS:]


def _story_names(path: Path) -> set[str]:
    """The golden names in one of Rasa's result files ("<name> (<file>)" stories)."""
    import rasa.shared.utils.io

    if not path.exists():
        return set()
    content = rasa.shared.utils.io.read_yaml(path.read_text(encoding="utf-8"))
    stories = content.get("stories") if isinstance(content, dict) else None
    return {
        str(story.get("story", "")).split(" ", 1)[0]
        for story in stories or []
        if isinstance(story, dict)
    }
