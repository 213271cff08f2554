"""Secrets never reach a log line, whichever library writes it."""

from __future__ import annotations

import logging

import pytest

from bot import log_redaction
from bot import settings as bot_settings


def test_configured_secrets_are_redacted(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    monkeypatch.setenv("TELEGRAM_TOKEN", "123456:SECRET-bot-token")
    monkeypatch.setenv("RABBITMQ_URL", "amqp://rapport:broker-pass@mq.internal:5672/")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-slack-secret")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "signing-secret-value")
    settings = bot_settings.load()
    redacting = log_redaction.SecretRedactingFilter(log_redaction.secrets_of(settings))
    caplog.handler.addFilter(redacting)
    logger = logging.getLogger("httpx")
    logger.warning(
        "HTTP Request: POST https://api.telegram.org/bot%s/sendMessage", settings.telegram_token
    )
    logger.warning("connecting to %s with %s", settings.rabbitmq_url, "xoxb-slack-secret")
    try:
        raise RuntimeError("auth failed for signing-secret-value")
    except RuntimeError:
        logger.exception("boom")
    text = caplog.text
    for secret in ("SECRET-bot-token", "broker-pass", "xoxb-slack-secret", "signing-secret-value"):
        assert secret not in text
    assert "bot***/sendMessage" in text and "amqp://rapport:***@mq.internal" in text


def test_mail_identity_shop_and_crm_secrets_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {
        "SMTP_PASSWORD": "smtp-password-value",
        "IDENTITY_SECRET": "identity-secret-" + "x" * 32,
        "SHOP_TOKEN_SECRET": "shop-token-secret-" + "y" * 32,
        "HUBSPOT_ACCESS_TOKEN": "pat-eu1-hubspot-token",
        "SALESFORCE_ACCESS_TOKEN": "00Dxx0000001gPL!salesforce-session",
        "SALESFORCE_PASSWORD": "salesforce-password",
        "SALESFORCE_SECURITY_TOKEN": "salesforce-security-token",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    assert set(secrets.values()) <= set(log_redaction.secrets_of(bot_settings.load()))
