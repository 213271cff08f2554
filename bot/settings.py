"""Every setting of the bot side (Rasa server, stores, channels, handoff), from the environment.

One frozen :class:`Settings` per process: :func:`current` builds it once (entry points
validate it at start-up, with a message naming the variable); :func:`load` builds a
fresh one (tests, CLIs that report errors). Each field names its environment variable,
and the CRM's settings (database, event feed) are ``Settings.crm``, read by
``crm_bridge.settings``. Defaults are the embedded, single-machine set-up that `make run`
uses: SQLite under ``var/``, no Redis, no broker.

Only this module and ``crm_bridge/settings.py`` read or write ``os.environ``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Mapping
from pathlib import Path

from crm_bridge import settings as crm_settings
from crm_bridge.settings import SettingsError, env_field, environment_variables, from_environ

__all__ = [
    "PROJECT_ROOT",
    "Settings",
    "SettingsError",
    "current",
    "environment_variables",
    "load",
]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The longest customer message any channel passes to the assistant (Telegram's own limit
# is 4096); the bounds keep a typo from refusing every message or feeding NLU a book.
MIN_MESSAGE_CHARS = 64
MAX_MESSAGE_CHARS = 100_000
# Rasa runs at most this many actions for one message (its MAX_NUMBER_OF_PREDICTIONS);
# with the time NLU and the stores may take, it bounds how long one turn holds its lock.
MAX_ACTIONS_PER_TURN = 10
TURN_MARGIN_SECONDS = 20


def turn_seconds(action_timeout_seconds: int) -> int:
    """The longest a turn can take when every action runs into its timeout."""
    return MAX_ACTIONS_PER_TURN * action_timeout_seconds + TURN_MARGIN_SECONDS


@dataclasses.dataclass(frozen=True)
class Settings:
    """A snapshot of the bot's configuration; build it with :func:`current` or :func:`load`."""

    crm: crm_settings.CrmSettings = dataclasses.field(default_factory=crm_settings.CrmSettings)
    rasa_interface: str = env_field("RASA_INTERFACE", "127.0.0.1", "where Rasa listens")
    rasa_port: int = env_field("RASA_PORT", 5005, "Rasa's port")
    action_port: int = env_field("ACTION_PORT", 5055, "the action server's port")
    action_endpoint_url: str = env_field(
        "ACTION_ENDPOINT_URL", "", "where Rasa calls the action server (default: loopback)"
    )
    action_timeout_seconds: int = env_field(
        "ACTION_TIMEOUT_SECONDS",
        5,
        "how long Rasa waits for a custom action before the customer hears it is having trouble",
    )
    lock_lifetime_seconds: int = env_field(
        "TICKET_LOCK_LIFETIME",
        0,
        "how long one message holds its conversation's lock (default: long enough for "
        "MAX_NUMBER_OF_PREDICTIONS actions of ACTION_TIMEOUT_SECONDS each)",
    )
    api_enabled: bool = env_field("RASA_ENABLE_API", False, "Rasa's HTTP API (needs a token)")
    api_token: str = env_field("RASA_API_TOKEN", "", "token for Rasa's HTTP API")
    jwt_secret: str = env_field("RASA_JWT_SECRET", "", "JWT secret for Rasa's HTTP API")
    models_dir: Path = env_field(
        "RAPPORT_MODELS_DIR", PROJECT_ROOT / "models", "where trained models are kept"
    )
    log_level: str = env_field("LOG_LEVEL", "INFO", "the servers' log level")
    telegram_token: str = env_field("TELEGRAM_TOKEN", "", "the Telegram bot's token")
    telegram_secret_token: str = env_field(
        "TELEGRAM_SECRET_TOKEN", "", "webhook secret (default: a random one per start)"
    )
    telegram_webhook_url: str = env_field(
        "TELEGRAM_WEBHOOK_URL", "", "the public HTTPS URL of the Telegram webhook"
    )
    telegram_api_base_url: str = env_field(
        "TELEGRAM_API_BASE_URL", "https://api.telegram.org/bot", "the Bot API (tests: a fake)"
    )
    telegram_mode: str = env_field("TELEGRAM_MODE", "webhook", "webhook or polling")
    telegram_chat_interval: float = env_field(
        "TELEGRAM_CHAT_INTERVAL_SECONDS", 1.0, "seconds between two messages to one chat"
    )
    slack_bot_token: str = env_field("SLACK_BOT_TOKEN", "", "the Slack app's bot token")
    slack_signing_secret: str = env_field(
        "SLACK_SIGNING_SECRET", "", "verifies Slack's HTTP requests"
    )
    slack_app_token: str = env_field("SLACK_APP_TOKEN", "", "Socket Mode (development)")
    slack_api_base_url: str = env_field(
        "SLACK_API_BASE_URL", "https://slack.com/api/", "the Web API (tests: a fake)"
    )
    slack_agent_channel: str = env_field(
        "SLACK_AGENT_CHANNEL", "", "the agents' Slack channel for handoffs"
    )
    business_hours: str = env_field("BUSINESS_HOURS", "", "when agents work (default: always)")
    business_timezone: str = env_field("BUSINESS_TIMEZONE", "UTC", "time zone of those hours")
    max_message_chars: int = env_field(
        "MAX_MESSAGE_CHARS", 4096, "the longest customer message any channel passes on"
    )
    web_chat_url: str = env_field(
        "WEB_CHAT_URL",
        "",
        "the web chat's public address, for export links (default: localhost:RASA_PORT/chat)",
    )
    agent_api_token: str = env_field(
        "AGENT_API_TOKEN", "", "turns on the agent API and is its bearer token"
    )
    handoff_claim_timeout_minutes: float = env_field(
        "HANDOFF_CLAIM_TIMEOUT_MINUTES", 15.0, "how long a handoff waits for an agent"
    )
    workbench_interface: str = env_field(
        "WORKBENCH_INTERFACE", "127.0.0.1", "where the trainer workbench listens"
    )
    workbench_port: int = env_field("WORKBENCH_PORT", 5010, "the trainer workbench's port")
    workbench_secret: str = env_field(
        "WORKBENCH_SECRET", "", "signs workbench sessions (default: a random key in var/)"
    )
    workbench_project_dir: Path = env_field(
        "WORKBENCH_PROJECT_DIR", PROJECT_ROOT, "the assistant whose data/ the workbench edits"
    )
    workbench_rasa_url: str = env_field(
        "WORKBENCH_RASA_URL", "", "the Rasa server a promotion loads (default: RASA_PORT)"
    )
    workbench_session_hours: float = env_field(
        "WORKBENCH_SESSION_HOURS", 12.0, "how long a workbench login lasts"
    )
    workbench_secure_cookies: bool = env_field(
        "WORKBENCH_SECURE_COOKIES", False, "send the session cookie over HTTPS only"
    )

    @property
    def rasa_url(self) -> str:
        """Where the workbench reaches the Rasa server it promotes models into."""
        return self.workbench_rasa_url or f"http://127.0.0.1:{self.rasa_port}"

    @property
    def rabbitmq_url(self) -> str:
        """The CRM's event feed (``Settings.crm`` holds it)."""
        return self.crm.rabbitmq_url

    @property
    def redis_url(self) -> str:
        """Redis for the stores, dedupe and the web inbox (``Settings.crm`` holds it)."""
        return self.crm.redis_url

    @property
    def tracker_database_url(self) -> str:
        """Rasa's SQL conversation store (``Settings.crm`` holds it and its default)."""
        return self.crm.tracker_database_url

    def validate(self) -> None:
        """Refuse configurations that would be unsafe or cannot start."""
        self.crm.validate()
        if self.telegram_mode not in {"webhook", "polling"}:
            raise SettingsError("TELEGRAM_MODE must be webhook or polling")
        if self.slack_bot_token and not (self.slack_signing_secret or self.slack_app_token):
            raise SettingsError(
                "SLACK_BOT_TOKEN needs SLACK_SIGNING_SECRET (HTTP events) or SLACK_APP_TOKEN "
                "(Socket Mode): Slack requests must be verifiable."
            )
        if self.api_enabled and not (self.api_token or self.jwt_secret):
            raise SettingsError(
                "RASA_ENABLE_API=true needs RASA_API_TOKEN or RASA_JWT_SECRET: "
                "Rasa's HTTP API can read and rewrite every conversation."
            )
        if self.slack_agent_channel and not self.slack_bot_token:
            raise SettingsError("SLACK_AGENT_CHANNEL needs SLACK_BOT_TOKEN (the Slack app).")
        from bot.business_hours import BusinessHours

        BusinessHours.parse(self.business_hours, self.business_timezone)
        if not MIN_MESSAGE_CHARS <= self.max_message_chars <= MAX_MESSAGE_CHARS:
            raise SettingsError(
                f"MAX_MESSAGE_CHARS must be between {MIN_MESSAGE_CHARS} and "
                f"{MAX_MESSAGE_CHARS}, got {self.max_message_chars}"
            )
        if self.handoff_claim_timeout_minutes <= 0:
            raise SettingsError("HANDOFF_CLAIM_TIMEOUT_MINUTES must be more than 0")
        if self.workbench_session_hours <= 0:
            raise SettingsError("WORKBENCH_SESSION_HOURS must be more than 0")
        if self.workbench_secret and len(self.workbench_secret) < 32:
            raise SettingsError("WORKBENCH_SECRET must have at least 32 characters")
        if not 1 <= self.action_timeout_seconds <= 300:
            raise SettingsError("ACTION_TIMEOUT_SECONDS must be between 1 and 300")
        if self.lock_lifetime_seconds < turn_seconds(self.action_timeout_seconds):
            # A lock that expires while the turn still runs would let the conversation's
            # next message run at the same time, out of order.
            least = turn_seconds(self.action_timeout_seconds)
            raise SettingsError(
                f"TICKET_LOCK_LIFETIME must be at least {least} s: "
                f"{MAX_ACTIONS_PER_TURN} actions of ACTION_TIMEOUT_SECONDS plus "
                f"{TURN_MARGIN_SECONDS} s"
            )
        for name, port in (
            ("RASA_PORT", self.rasa_port),
            ("ACTION_PORT", self.action_port),
            ("WORKBENCH_PORT", self.workbench_port),
        ):
            if not 0 < port < 65536:
                raise SettingsError(f"{name} must be a TCP port, got {port}")


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Fresh settings from ``environ`` (default: this process's environment)."""
    environ = os.environ if environ is None else environ
    crm = crm_settings.load(environ)
    settings = from_environ(Settings, environ, crm=crm)
    # Defaults that depend on other settings.
    derived: dict[str, object] = {"log_level": settings.log_level.upper()}
    if not settings.action_endpoint_url:
        derived["action_endpoint_url"] = f"http://127.0.0.1:{settings.action_port}/webhook"
    if not settings.lock_lifetime_seconds:
        derived["lock_lifetime_seconds"] = turn_seconds(settings.action_timeout_seconds)
    derived["telegram_mode"] = settings.telegram_mode.lower()
    derived["web_chat_url"] = (
        settings.web_chat_url or f"http://localhost:{settings.rasa_port}/chat"
    ).rstrip("/")
    return dataclasses.replace(settings, **derived)  # type: ignore[arg-type]


@functools.lru_cache(maxsize=1)
def current() -> Settings:
    """This process's settings, built once (entry points call ``validate()`` on them)."""
    return load()


def export_for_rasa(settings: Settings) -> None:
    """What Rasa reads from the environment itself: ``${ACTION_ENDPOINT_URL}`` in
    endpoints.yml, and telemetry, which stays off."""
    os.environ.setdefault("ACTION_ENDPOINT_URL", settings.action_endpoint_url)
    os.environ["RASA_TELEMETRY_ENABLED"] = "false"
    # Rasa reads both when rasa.core is first imported, so this runs before that.
    os.environ["TICKET_LOCK_LIFETIME"] = str(settings.lock_lifetime_seconds)
    os.environ["MAX_NUMBER_OF_PREDICTIONS"] = str(MAX_ACTIONS_PER_TURN)


def forbid_hub_downloads() -> None:
    """Make Hugging Face libraries fail rather than download anything at run time."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _shown(value: object) -> str:
    if isinstance(value, Path):
        value = value.relative_to(PROJECT_ROOT) if value.is_relative_to(PROJECT_ROOT) else value
    if isinstance(value, bool):
        value = str(value).lower()
    return f"`{value}`" if value != "" else "–"


def markdown_table() -> str:
    """The table of every variable, default and meaning (docs/operations.md holds it)."""
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for cls in (crm_settings.CrmSettings, Settings):
        for spec in dataclasses.fields(cls):
            if "env" in spec.metadata:
                name, doc = spec.metadata["env"], spec.metadata["doc"]
                rows.append(f"| `{name}` | {_shown(spec.default)} | {doc} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m bot settings [--check]``: print the variables' table, or check
    the settings of this environment (exit 2 with the variable's name when one is bad)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m bot settings", description=main.__doc__)
    parser.add_argument("--check", action="store_true", help="validate this environment")
    args = parser.parse_args(argv)
    if not args.check:
        print(markdown_table(), end="")
        return 0
    try:
        load().validate()
    except SettingsError as error:
        print(f"settings: {error}", file=sys.stderr)
        return 2
    print("settings: ok")
    return 0


def child_environment(settings: Settings) -> dict[str, str]:
    """The environment for the servers `python -m bot serve` starts."""
    env = crm_settings.process_environment()
    env["RASA_TELEMETRY_ENABLED"] = "false"
    env.setdefault("ACTION_ENDPOINT_URL", settings.action_endpoint_url)
    # The action server has no authentication of its own: keep it on loopback unless
    # the operator deliberately exposes it (e.g. to a Rasa server on another host).
    env.setdefault("SANIC_HOST", "127.0.0.1")
    env.setdefault("PYTHONPATH", str(PROJECT_ROOT))
    return env
