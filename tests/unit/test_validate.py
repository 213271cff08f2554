"""Which responses `python -m bot validate` counts as used outside stories and rules."""

from __future__ import annotations

from pathlib import Path

from bot.validate import responses_used_outside_stories


def test_form_questions_actions_and_the_action_endpoints_answer_count(tmp_path: Path) -> None:
    # A project folder as the workbench validates it: its own actions, no copy of bot/.
    actions = tmp_path / "actions"
    actions.mkdir()
    (actions / "thing.py").write_text('dispatcher.utter_message(response="utter_thing_done")\n')
    domain = {"forms": {"thing_form": {"required_slots": ["size"]}}}
    used = responses_used_outside_stories(tmp_path, domain)
    assert {"utter_ask_size", "utter_thing_done", "utter_action_trouble"} <= used
