"""The CRM bridge's settings: one typed object built from the environment.

Kept apart from ``bot.settings`` because ``crm_bridge`` must work without the bot (for
the consumer, the CLI and other agent consoles); the bot's settings hold one of these
(``Settings.crm``) instead of reading the same variables again. Each field names its
environment variable (``env_field``), which is how ``.env.example`` and the docs'
table are checked against the code (tests/unit/test_settings_documented.py).

This module and ``bot/settings.py`` are the only places that read ``os.environ``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from crm_bridge.errors import SettingsError
from crm_bridge.quiet_hours import QuietHours

__all__ = ["SettingsError"]  # its home is crm_bridge.errors; imported from here too

PROJECT_ROOT = Path(__file__).resolve().parent.parent
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}

T = TypeVar("T")
# CRM_BACKEND's values: the SQL CRM alone, or a remote CRM mirrored through the outbox.
CRM_BACKENDS = ("sql", "hubspot", "salesforce")
SALESFORCE_LOGIN_URL = "https://login.salesforce.com"


def env_field(name: str, default: Any, doc: str) -> Any:
    """A settings field read from environment variable ``name`` (``doc`` says what it is)."""
    return dataclasses.field(default=default, metadata={"env": name, "doc": doc})


def _convert(name: str, raw: str, kind: str) -> Any:
    if kind == "bool":
        if raw.lower() in _TRUE | _FALSE:
            return raw.lower() in _TRUE
        raise SettingsError(f"{name} must be true or false, got {raw!r}")
    if kind in {"int", "float"}:
        try:
            return int(raw) if kind == "int" else float(raw)
        except ValueError as error:
            noun = "a whole number" if kind == "int" else "a number"
            raise SettingsError(f"{name} must be {noun}, got {raw!r}") from error
    if kind == "Path":
        return Path(raw)
    return raw


def from_environ(cls: type[T], environ: Mapping[str, str], **given: Any) -> T:
    """An instance of the settings dataclass ``cls``: each ``env_field`` from its variable
    (blank or unset: the default), converted to the field's type; ``given`` fills the rest."""
    values = dict(given)
    for spec in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = spec.metadata.get("env")
        if name is None or spec.name in values:
            continue
        raw = environ.get(name, "").strip()
        if raw:
            values[spec.name] = _convert(name, raw, str(spec.type))
    return cls(**values)


def environment_variables(cls: type) -> dict[str, str]:
    """``{variable: what it is}`` for every field of a settings dataclass."""
    return {
        spec.metadata["env"]: spec.metadata["doc"]
        for spec in dataclasses.fields(cls)
        if "env" in spec.metadata
    }


def process_environment() -> dict[str, str]:
    """A copy of this process's environment, for the child processes it starts."""
    return dict(os.environ)


@dataclasses.dataclass(frozen=True)
class CrmSettings:
    """Where the CRM and its event feed are."""

    var_dir: Path = env_field(
        "RAPPORT_VAR_DIR", PROJECT_ROOT / "var", "folder of the embedded SQLite databases"
    )
    crm_database_url: str = env_field(
        "CRM_DATABASE_URL", "", "the CRM's SQLAlchemy URL (default: SQLite in the var folder)"
    )
    # sql: the database above is the CRM; hubspot / salesforce: it stays the bot's own
    # store and its writes are mirrored there through the outbox (crm_bridge.outbox).
    crm_backend: str = env_field(
        "CRM_BACKEND", "sql", "sql, or a remote CRM that receives its writes: hubspot, salesforce"
    )
    rabbitmq_url: str = env_field(
        "RABBITMQ_URL", "", "publish conversation events to RabbitMQ (default: in-process log)"
    )
    events_queue: str = env_field(
        "RAPPORT_EVENTS_QUEUE", "rapport_events", "the durable queue of conversation events"
    )
    events_exchange: str = env_field(
        "RAPPORT_EVENTS_EXCHANGE", "rasa-exchange", "the exchange Rasa publishes events to"
    )
    session_timeout_minutes: int = env_field(
        "SESSION_TIMEOUT_MINUTES", 60, "inactivity after which an Interaction is closed"
    )
    # Proactive messages (crm_bridge.proactive): no message goes out in these hours.
    quiet_hours: str = env_field(
        "QUIET_HOURS", "", "no proactive message in these hours, e.g. 21:00-08:00 (default: none)"
    )
    quiet_hours_timezone: str = env_field(
        "QUIET_HOURS_TIMEZONE", "UTC", "time zone of the quiet hours"
    )

    outcome_slot: str = env_field(
        "TRANSCRIPT_OUTCOME_SLOT", "interaction_outcome", "the slot actions report outcomes in"
    )
    closing_intents: str = env_field(
        "TRANSCRIPT_CLOSING_INTENTS", "thank,goodbye", "intents that end a conversation helped"
    )
    resolving_responses: str = env_field(
        "TRANSCRIPT_RESOLVING_RESPONSES", "utter_faq", "response name prefixes that resolve"
    )
    unsummarised_intents: str = env_field(
        "TRANSCRIPT_UNSUMMARISED_INTENTS",
        "nlu_fallback,greet,goodbye,thank,affirm,deny,bot_challenge",
        "intents that name no subject (left out of summaries and durable resolution)",
    )
    phone_region: str = env_field(
        "DEFAULT_PHONE_REGION", "GB", "country of phone numbers given without +code (ISO 3166)"
    )
    smtp_host: str = env_field(
        "SMTP_HOST", "", "mail server for one-time codes (default: files in var/outbox/)"
    )
    smtp_port: int = env_field("SMTP_PORT", 587, "the mail server's port")
    smtp_username: str = env_field("SMTP_USERNAME", "", "login at the mail server")
    smtp_password: str = env_field("SMTP_PASSWORD", "", "password at the mail server")
    smtp_starttls: bool = env_field("SMTP_STARTTLS", True, "upgrade the connection with STARTTLS")
    mail_from: str = env_field(
        "MAIL_FROM", "Rapport <no-reply@localhost>", "the sender of the assistant's emails"
    )
    identity_secret: str = env_field(
        "IDENTITY_SECRET", "", "signs link tokens (default: a random key kept in var/)"
    )
    shop_token_secret: str = env_field(
        "SHOP_TOKEN_SECRET", "", "verifies the shop's signed web chat tokens (HS256 JWT)"
    )
    # The conversation stores: the bot writes them, and erasure (crm_bridge.erasure) and
    # retention (crm_bridge.retention) must reach them without importing the bot.
    redis_url: str = env_field(
        "REDIS_URL", "", "Redis for the tracker and lock stores, dedupe and the web inbox"
    )
    tracker_database_url: str = env_field(
        "TRACKER_DATABASE_URL", "", "Rasa's conversation store without Redis (default: SQLite)"
    )
    transcript_retention_days: int = env_field(
        "TRANSCRIPT_RETENTION_DAYS",
        365,
        "transcripts and conversation events older than this are purged (0: kept for ever)",
    )
    # HubSpot (CRM_BACKEND=hubspot; crm_bridge.remote.hubspot, docs/crms.md).
    hubspot_access_token: str = env_field(
        "HUBSPOT_ACCESS_TOKEN", "", "HubSpot private app access token (CRM_BACKEND=hubspot)"
    )
    hubspot_api_base_url: str = env_field(
        "HUBSPOT_API_BASE_URL", "https://api.hubapi.com", "HubSpot's API root"
    )
    hubspot_mapping: Path = env_field(
        "HUBSPOT_MAPPING",
        PROJECT_ROOT / "crm" / "hubspot.yml",
        "the HubSpot mapping file: identity property, ticket pipelines and stages",
    )
    hubspot_requests_per_10s: int = env_field(
        "HUBSPOT_REQUESTS_PER_10S",
        190,
        "requests per 10 s this process sends HubSpot (private apps: 190; lower tiers: 100)",
    )
    # Salesforce (CRM_BACKEND=salesforce; crm_bridge.remote.salesforce, docs/crms.md).
    salesforce_instance_url: str = env_field(
        "SALESFORCE_INSTANCE_URL",
        "",
        "the org's URL, e.g. https://acme.my.salesforce.com (with SALESFORCE_ACCESS_TOKEN)",
    )
    salesforce_access_token: str = env_field(
        "SALESFORCE_ACCESS_TOKEN", "", "a Salesforce session id / OAuth access token"
    )
    salesforce_username: str = env_field(
        "SALESFORCE_USERNAME", "", "the integration user (password or JWT bearer login)"
    )
    salesforce_password: str = env_field(
        "SALESFORCE_PASSWORD", "", "the integration user's password (password login)"
    )
    salesforce_security_token: str = env_field(
        "SALESFORCE_SECURITY_TOKEN", "", "the integration user's security token (password login)"
    )
    salesforce_consumer_key: str = env_field(
        "SALESFORCE_CONSUMER_KEY", "", "the connected app's consumer key (JWT bearer login)"
    )
    salesforce_private_key_file: str = env_field(
        "SALESFORCE_PRIVATE_KEY_FILE", "", "the connected app's private key, PEM (JWT bearer)"
    )
    salesforce_login_url: str = env_field(
        "SALESFORCE_LOGIN_URL",
        SALESFORCE_LOGIN_URL,
        "where password and JWT sign-in go: https://test.salesforce.com for a sandbox, or "
        "https://yourorg.my.salesforce.com (My Domain)",
    )
    salesforce_mapping: Path = env_field(
        "SALESFORCE_MAPPING",
        PROJECT_ROOT / "crm" / "salesforce.yml",
        "the Salesforce mapping file: Contact or Lead, external id fields, case routing",
    )
    salesforce_api_version: str = env_field(
        "SALESFORCE_API_VERSION", "59.0", "the Salesforce REST API version"
    )
    salesforce_requests_per_day: int = env_field(
        "SALESFORCE_REQUESTS_PER_DAY",
        15000,
        "API calls per 24 h this process sends Salesforce (a share of the org's daily limit)",
    )

    @property
    def database_url(self) -> str:
        """The CRM's SQLAlchemy URL: CRM_DATABASE_URL, else SQLite at var/crm.db."""
        if self.crm_database_url:
            return self.crm_database_url
        self.var_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.var_dir / 'crm.db'}"

    def validate(self) -> None:
        """Refuse values that cannot work."""
        if self.session_timeout_minutes < 1:
            raise SettingsError("SESSION_TIMEOUT_MINUTES must be at least 1")
        QuietHours.parse(self.quiet_hours, self.quiet_hours_timezone)
        if self.crm_backend not in CRM_BACKENDS:
            raise SettingsError(
                f"CRM_BACKEND must be one of {', '.join(CRM_BACKENDS)}, got {self.crm_backend!r}"
            )
        if self.transcript_retention_days < 0:
            raise SettingsError("TRANSCRIPT_RETENTION_DAYS must be 0 (keep) or more")
        if self.crm_backend == "hubspot" and not self.hubspot_access_token:
            raise SettingsError(
                "HUBSPOT_ACCESS_TOKEN must be set (a private app's token) when CRM_BACKEND=hubspot"
            )
        if not 1 <= self.hubspot_requests_per_10s <= 1000:
            raise SettingsError("HUBSPOT_REQUESTS_PER_10S must be between 1 and 1000")
        if self.crm_backend == "salesforce":
            self.validate_salesforce()
        if not 1 <= self.salesforce_requests_per_day <= 10_000_000:
            raise SettingsError("SALESFORCE_REQUESTS_PER_DAY must be between 1 and 10000000")
        import phonenumbers

        if self.phone_region not in phonenumbers.SUPPORTED_REGIONS:
            raise SettingsError(
                f"DEFAULT_PHONE_REGION must be a country code such as GB or NL, "
                f"got {self.phone_region!r}"
            )

    def salesforce_login(self) -> str:
        """How the Salesforce adapter signs in: ``token``, ``password``, ``jwt`` or ``""``
        (not configured)."""
        if self.salesforce_access_token:
            return "token"
        if self.salesforce_username and self.salesforce_password:
            return "password"
        if self.salesforce_username and self.salesforce_consumer_key:
            return "jwt"
        return ""

    def validate_salesforce(self) -> None:
        """Refuse CRM_BACKEND=salesforce without a complete set of credentials."""
        login = self.salesforce_login()
        if not login:
            raise SettingsError(
                "CRM_BACKEND=salesforce needs credentials: SALESFORCE_ACCESS_TOKEN with "
                "SALESFORCE_INSTANCE_URL, or SALESFORCE_USERNAME with SALESFORCE_PASSWORD and "
                "SALESFORCE_SECURITY_TOKEN, or SALESFORCE_USERNAME with "
                "SALESFORCE_CONSUMER_KEY and SALESFORCE_PRIVATE_KEY_FILE (JWT bearer)"
            )
        if login == "token" and not self.salesforce_instance_url:
            raise SettingsError("SALESFORCE_INSTANCE_URL must be set with SALESFORCE_ACCESS_TOKEN")
        # Both carry the session id or the credentials: plain http only to this machine.
        for name, url in (
            ("SALESFORCE_INSTANCE_URL", self.salesforce_instance_url),
            ("SALESFORCE_LOGIN_URL", self.salesforce_login_url),
        ):
            if url and not https_or_local(url):
                raise SettingsError(f"{name} must be an https:// URL, got {redact_url(url)!r}")
        if login == "jwt" and not self.salesforce_private_key_file:
            raise SettingsError(
                "SALESFORCE_PRIVATE_KEY_FILE must be set with SALESFORCE_CONSUMER_KEY (JWT bearer)"
            )


def load(environ: Mapping[str, str] | None = None) -> CrmSettings:
    """The CRM settings from ``environ`` (default: this process's environment)."""
    settings = from_environ(CrmSettings, os.environ if environ is None else environ)
    derived: dict[str, Any] = {
        "phone_region": settings.phone_region.upper(),
        "crm_backend": settings.crm_backend.lower(),
    }
    if not settings.tracker_database_url:
        derived["tracker_database_url"] = f"sqlite:///{settings.var_dir / 'rasa_tracker.db'}"
    settings = dataclasses.replace(settings, **derived)
    settings.validate()
    return settings


def var_dir() -> Path:
    """Where embedded data lives (``var/`` in the project unless RAPPORT_VAR_DIR says otherwise)."""
    return load().var_dir


def database_url() -> str:
    """The CRM's SQLAlchemy URL: CRM_DATABASE_URL, else SQLite at var/crm.db."""
    return load().database_url


def rabbitmq_url() -> str:
    """RABBITMQ_URL, or an empty string when the embedded (in-process) log is used."""
    return load().rabbitmq_url


def events_queue() -> str:
    """The durable queue Rasa publishes conversation events to."""
    return load().events_queue


def events_exchange() -> str:
    """The fanout exchange Rasa's PikaEventBroker binds its queues to."""
    return load().events_exchange


def session_timeout_minutes() -> int:
    """Inactivity after which an open Interaction counts as ended."""
    return load().session_timeout_minutes


def https_or_local(url: str) -> bool:
    """Whether ``url`` is https with a host, or http to this machine (the tests' stand-ins)."""
    parts = urlsplit(url)
    if parts.scheme == "http":
        return parts.hostname in ("127.0.0.1", "localhost")
    return parts.scheme == "https" and bool(parts.hostname)


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``, safe to log or print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
