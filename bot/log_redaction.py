"""Keep secrets out of logs, whoever logs them.

HTTP client libraries log request URLs, and the Telegram Bot API puts the bot token in
every URL; a library may also echo a password from a connection string. A filter on the
root handlers replaces every configured secret with ``***`` before a record is written.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from bot.settings import Settings
from crm_bridge import settings as crm_settings

REDACTED = "***"
# Per-request lines of the HTTP clients: noise at INFO, and they carry full URLs.
CHATTY_LOGGERS = ("httpx", "httpcore", "aiohttp.access", "slack_sdk.web.async_base_client")


def secrets_of(settings: Settings) -> list[str]:
    """Every secret value configured for this process (empty ones left out)."""
    from urllib.parse import urlsplit

    values = [
        settings.telegram_token,
        settings.telegram_secret_token,
        settings.slack_bot_token,
        settings.slack_signing_secret,
        settings.slack_app_token,
        settings.api_token,
        settings.jwt_secret,
        settings.agent_api_token,
        settings.crm.smtp_password,
        settings.crm.identity_secret,
        settings.crm.shop_token_secret,
        settings.crm.hubspot_access_token,
        settings.crm.salesforce_access_token,
        settings.crm.salesforce_password,
        settings.crm.salesforce_security_token,
    ]
    for url in (settings.redis_url, settings.rabbitmq_url, crm_settings.database_url()):
        password = urlsplit(url).password if url else None
        values.append(password or "")
    return [value for value in values if len(value) >= 4]


class SecretRedactingFilter(logging.Filter):
    """Rewrites records that contain a secret."""

    def __init__(self, secret_values: Iterable[str]) -> None:
        super().__init__()
        # Longest first, so a secret containing another is replaced whole.
        self.secrets = sorted(set(secret_values), key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        redacted = message
        for secret in self.secrets:
            redacted = redacted.replace(secret, REDACTED)
        if redacted != message:
            record.msg, record.args = redacted, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            for secret in self.secrets:
                record.exc_text = record.exc_text.replace(secret, REDACTED)
        return True


def install(settings: Settings) -> None:
    """Attach the filter to every root handler and quieten per-request HTTP logging."""
    redacting = SecretRedactingFilter(secrets_of(settings))
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO)
    for handler in root.handlers:
        handler.addFilter(redacting)
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
