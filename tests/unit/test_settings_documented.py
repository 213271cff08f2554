"""Settings have one home: only the two settings modules read the environment, and every
variable they read is in .env.example and in the documentation's table."""

from __future__ import annotations

import re

import pytest

from bot import settings as bot_settings
from bot.settings import PROJECT_ROOT
from crm_bridge import settings as crm_settings

SETTINGS_MODULES = {"bot/settings.py", "crm_bridge/settings.py"}
PACKAGES = ("bot", "actions", "connectors", "crm_bridge")


def all_variables() -> dict[str, str]:
    return {
        **crm_settings.environment_variables(crm_settings.CrmSettings),
        **bot_settings.environment_variables(bot_settings.Settings),
    }


def test_only_the_settings_modules_read_the_environment() -> None:
    offenders = []
    for package in PACKAGES:
        for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
            relative = path.relative_to(PROJECT_ROOT).as_posix()
            if relative in SETTINGS_MODULES or "/migrations/" in relative:
                continue
            if re.search(r"\bos\.(environ|getenv|putenv)\b", path.read_text()):
                offenders.append(relative)
    assert offenders == []


def test_every_variable_is_in_env_example() -> None:
    example = (PROJECT_ROOT / ".env.example").read_text()
    missing = [name for name in all_variables() if not re.search(rf"\b{name}=", example)]
    assert missing == []


def test_the_documented_table_is_the_generated_one() -> None:
    # Regenerate with `python -m bot settings` when a setting changes.
    assert bot_settings.markdown_table() in (PROJECT_ROOT / "docs" / "operations.md").read_text()
    assert all(f"`{name}`" in bot_settings.markdown_table() for name in all_variables())


def test_every_variable_says_what_it_is() -> None:
    assert all(doc.strip() for doc in all_variables().values())


@pytest.mark.parametrize(
    ("name", "value", "complaint"),
    [
        ("RASA_PORT", "fifty", "RASA_PORT must be a whole number"),
        ("RASA_ENABLE_API", "maybe", "RASA_ENABLE_API must be true or false"),
        ("TELEGRAM_CHAT_INTERVAL_SECONDS", "soon", "TELEGRAM_CHAT_INTERVAL_SECONDS must be a"),
        ("SESSION_TIMEOUT_MINUTES", "-5", "SESSION_TIMEOUT_MINUTES must be at least 1"),
        ("MAX_MESSAGE_CHARS", "10", "MAX_MESSAGE_CHARS must be between"),
        ("HANDOFF_CLAIM_TIMEOUT_MINUTES", "0", "HANDOFF_CLAIM_TIMEOUT_MINUTES must be more"),
    ],
)
def test_a_bad_value_is_refused_naming_its_variable(name: str, value: str, complaint: str) -> None:
    with pytest.raises(bot_settings.SettingsError, match=complaint):
        bot_settings.load({name: value}).validate()


def test_one_settings_object_per_process() -> None:
    assert bot_settings.current() is bot_settings.current()


def test_defaults_that_depend_on_other_settings(tmp_path) -> None:
    settings = bot_settings.load({"RAPPORT_VAR_DIR": str(tmp_path), "ACTION_PORT": "6000"})
    assert settings.tracker_database_url == f"sqlite:///{tmp_path / 'rasa_tracker.db'}"
    assert settings.action_endpoint_url == "http://127.0.0.1:6000/webhook"
    assert settings.crm.var_dir == tmp_path
