"""``python -m bot validate``: ``rasa data validate`` where every warning is an error,
except the ones Rasa 3.6 raises about responses that are in fact used.

Rasa's validator only looks at stories and rules, so it reports form questions
(``utter_ask_<slot>``) and responses sent by custom actions as unused. Those are
recognised here (forms' required slots in the domain, ``response="..."`` in actions/)
and listed as explained, as is an intent that is only ever sent as a shortcut and so has
no examples; anything else fails the check.
"""

from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path

from bot.settings import PROJECT_ROOT

UNUSED_UTTERANCE = re.compile(r"The utterance '([^']+)' is not used in any story or rule")
# Rasa merges the domain with one it builds from the NLU data's retrieval intents, and
# then reports those intents as duplicated "across domain files".
DUPLICATED_INTENTS = re.compile(
    r"^The following duplicated intents have been found across multiple domain files: (.+)$"
)
# Intents only ever sent as /intent shortcuts (the channels' inbound step,
# connectors/inbound.py): no message of a customer is classified as one of them.
SHORTCUT_ONLY_INTENTS = frozenset({"inbound_too_long", "prove_identity"})
NO_EXAMPLES = re.compile(r"The intent '([^']+)' is listed in the domain file, but is not found")
# `response="utter_x"` in an action, or a `..._RESPONSE = "utter_x"` constant (the
# trouble answer bot/action_endpoint.py gives for an action server that is down).
RESPONSE_IN_ACTION = re.compile(r"""response\s*=\s*["'](utter_[A-Za-z0-9_/]+)["']""", re.IGNORECASE)


def responses_used_outside_stories(root: Path, domain: dict) -> set[str]:
    """Form questions and responses that custom actions (or Rasa's side, for them) send."""
    used = {
        f"utter_ask_{slot}"
        for form in (domain.get("forms") or {}).values()
        for slot in (form or {}).get("required_slots", [])
    }
    # The project's actions, and this package (its Rasa side answers for actions too).
    for path in [*(root / "actions").rglob("*.py"), *Path(__file__).parent.rglob("*.py")]:
        used.update(RESPONSE_IN_ACTION.findall(path.read_text()))
    return used


def unexplained(
    messages: list[str], used_responses: set[str], retrieval_intents: set[str]
) -> list[str]:
    """The warnings that are not known false positives."""
    problems = []
    for message in messages:
        unused = UNUSED_UTTERANCE.search(message)
        if unused and unused.group(1) in used_responses:
            continue
        no_examples = NO_EXAMPLES.search(message)
        if no_examples and no_examples.group(1) in SHORTCUT_ONLY_INTENTS:
            continue
        duplicated = DUPLICATED_INTENTS.match(message.strip())
        if duplicated and set(duplicated.group(1).split(", ")) <= retrieval_intents:
            continue
        problems.append(message)
    return problems


def project_problems(root: Path = PROJECT_ROOT) -> list[str]:
    """Validate ``root``'s config.yml, domain.yml and data/: the problems left once Rasa's
    known false positives are set aside (empty when the data is fine)."""
    import rasa.shared.utils.io
    from rasa.cli.utils import validate_files
    from rasa.shared.importers.importer import TrainingDataImporter
    from rasa.utils.common import EXPECTED_WARNINGS

    importer = TrainingDataImporter.load_from_config(
        str(root / "config.yml"), str(root / "domain.yml"), [str(root / "data")]
    )
    errors: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            validate_files(fail_on_warnings=False, max_history=None, importer=importer)
        except SystemExit:
            errors.append("rasa data validate found errors (see the log above)")
    messages = [
        str(w.message)
        for w in caught
        if issubclass(w.category, UserWarning)
        # Warnings Rasa itself silences when it runs.
        and not any(
            issubclass(w.category, category) and re.match(pattern, str(w.message))
            for category, pattern in EXPECTED_WARNINGS
        )
    ]
    domain = rasa.shared.utils.io.read_yaml_file(root / "domain.yml")
    return errors + unexplained(
        messages,
        responses_used_outside_stories(root, domain),
        set(importer.get_nlu_data().retrieval_intents),
    )


def main(argv: list[str] | None = None) -> int:
    """Validate config.yml, domain.yml and data/; exit 1 on any unexplained warning."""
    problems = project_problems(PROJECT_ROOT)
    for message in problems:
        print(f"validate: {message}", file=sys.stderr)
    print(f"validate: {len(problems)} problems (Rasa's known false positives ignored)")
    return 1 if problems else 0
