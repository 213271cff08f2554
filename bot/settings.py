"""Every setting of the bot side (Rasa server, stores, broker, serving), from the environment.

`crm_bridge` keeps its own small settings module because it must work without this
package; everything else reads configuration here. Defaults are the embedded,
single-machine set-up that `make run` uses: SQLite under ``var/``, no Redis, no broker.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("RAPPORT_VAR_DIR", PROJECT_ROOT / "var"))

_TRUE = {"1", "true", "yes", "on"}
# The longest customer message any channel passes to the assistant (Telegram's own limit
# is 4096); the bounds keep a typo from refusing every message or feeding NLU a book.
MIN_MESSAGE_CHARS = 64
MAX_MESSAGE_CHARS = 100_000


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def _flag(name: str, default: bool = False) -> bool:
    raw = _env(name)
    return raw.lower() in _TRUE if raw else default


def _int(name: str, default: int) -> int:
    raw = _env(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError as error:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from error


def _float(name: str, default: float) -> float:
    raw = _env(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError as error:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from error


class SettingsError(ValueError):
    """A setting has a value that cannot work; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    """A snapshot of the bot's configuration; build it with :func:`load`."""

    redis_url: str
    rabbitmq_url: str
    events_queue: str
    events_exchange: str
    tracker_database_url: str
    rasa_interface: str
    rasa_port: int
    action_port: int
    action_endpoint_url: str
    api_enabled: bool
    api_token: str
    jwt_secret: str
    models_dir: Path
    log_level: str
    telegram_token: str = ""
    telegram_secret_token: str = ""
    telegram_webhook_url: str = ""
    telegram_api_base_url: str = "https://api.telegram.org/bot"
    telegram_mode: str = "webhook"
    telegram_chat_interval: float = 1.0
    slack_bot_token: str = ""
    slack_signing_secret: str = ""
    slack_app_token: str = ""
    slack_api_base_url: str = "https://slack.com/api/"
    slack_agent_channel: str = ""
    business_hours: str = ""
    business_timezone: str = "UTC"
    max_message_chars: int = 4096

    def validate(self) -> None:
        """Refuse configurations that would be unsafe or cannot start."""
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
        for name, port in (("RASA_PORT", self.rasa_port), ("ACTION_PORT", self.action_port)):
            if not 0 < port < 65536:
                raise SettingsError(f"{name} must be a TCP port, got {port}")


def load() -> Settings:
    """Read the settings from the environment (call it when needed, not at import time)."""
    action_port = _int("ACTION_PORT", 5055)
    return Settings(
        redis_url=_env("REDIS_URL"),
        rabbitmq_url=_env("RABBITMQ_URL"),
        events_queue=_env("RAPPORT_EVENTS_QUEUE", "rapport_events"),
        events_exchange=_env("RAPPORT_EVENTS_EXCHANGE", "rasa-exchange"),
        tracker_database_url=_env(
            "TRACKER_DATABASE_URL", f"sqlite:///{VAR_DIR / 'rasa_tracker.db'}"
        ),
        rasa_interface=_env("RASA_INTERFACE", "127.0.0.1"),
        rasa_port=_int("RASA_PORT", 5005),
        action_port=action_port,
        action_endpoint_url=_env("ACTION_ENDPOINT_URL", f"http://127.0.0.1:{action_port}/webhook"),
        api_enabled=_flag("RASA_ENABLE_API"),
        api_token=_env("RASA_API_TOKEN"),
        jwt_secret=_env("RASA_JWT_SECRET"),
        models_dir=Path(_env("RAPPORT_MODELS_DIR", str(PROJECT_ROOT / "models"))),
        log_level=_env("LOG_LEVEL", "INFO").upper(),
        telegram_token=_env("TELEGRAM_TOKEN"),
        telegram_secret_token=_env("TELEGRAM_SECRET_TOKEN"),
        telegram_webhook_url=_env("TELEGRAM_WEBHOOK_URL"),
        telegram_api_base_url=_env("TELEGRAM_API_BASE_URL", "https://api.telegram.org/bot"),
        telegram_mode=_env("TELEGRAM_MODE", "webhook").lower(),
        telegram_chat_interval=_float("TELEGRAM_CHAT_INTERVAL_SECONDS", 1.0),
        slack_bot_token=_env("SLACK_BOT_TOKEN"),
        slack_signing_secret=_env("SLACK_SIGNING_SECRET"),
        slack_app_token=_env("SLACK_APP_TOKEN"),
        slack_api_base_url=_env("SLACK_API_BASE_URL", "https://slack.com/api/"),
        slack_agent_channel=_env("SLACK_AGENT_CHANNEL"),
        business_hours=_env("BUSINESS_HOURS"),
        business_timezone=_env("BUSINESS_TIMEZONE", "UTC"),
        max_message_chars=_int("MAX_MESSAGE_CHARS", 4096),
    )
