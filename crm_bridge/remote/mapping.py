"""The mapping files of the remote CRMs (``crm/<backend>.yml``), read and checked at start-up.

Each remote CRM has one YAML file saying which of its objects, fields and pipelines our
records land in. It is checked once, when the adapter is built, and every problem is
reported together, each naming the file, the key (``tickets.complaint.stage``) and what is
wrong, so that an operator can fix the file in one go. :class:`MappingReader` is the
generic part (the Salesforce adapter reuses it); :class:`HubSpotMapping` is HubSpot's file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

from crm_bridge.errors import SettingsError

TICKET_CATEGORIES = ("complaint", "delivery", "return", "cancellation", "human_request", "other")
# HubSpot's internal property names: lower case letters, digits and underscores.
_PROPERTY_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_MISSING = object()


class MappingError(SettingsError):
    """A mapping file is missing, unreadable or wrong; the message lists every problem."""


class MappingReader:
    """Reads values out of a mapping file's YAML by dotted key, collecting problems.

    Each accessor returns a usable value even when the file is wrong (a default), so that
    one pass finds every problem; :meth:`check` then raises them all at once.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[str] = []
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise MappingError(f"{path}: the mapping file does not exist") from None
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            raise MappingError(f"{path}: cannot be read as YAML ({error})") from None
        if not isinstance(loaded, dict):
            raise MappingError(f"{path}: must be a YAML mapping of sections (key: value)")
        self.data: dict[str, Any] = loaded

    def problem(self, key: str, what: str) -> None:
        """Note that ``key`` is wrong (``what`` says how)."""
        self.problems.append(f"{key}: {what}")

    def raw(self, key: str) -> Any:
        """The value at dotted ``key``, or ``_MISSING``."""
        node: Any = self.data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return _MISSING
            node = node[part]
        return node

    def section(self, key: str, required: bool = True) -> dict[str, Any]:
        """The mapping at ``key`` ({} when absent and not required)."""
        value = self.raw(key)
        if value is _MISSING or value is None:
            if required:
                self.problem(key, "missing (a section of key: value lines)")
            return {}
        if not isinstance(value, dict):
            self.problem(key, f"must be a section of key: value lines, got {_kind(value)}")
            return {}
        return value

    def text(
        self, key: str, default: str | None = None, pattern: re.Pattern[str] | None = None
    ) -> str:
        """A non-empty string at ``key`` (numbers are read as their text: pipeline ids)."""
        value = self.raw(key)
        if value is _MISSING or value is None:
            if default is None:
                self.problem(key, "missing")
            return default or ""
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            self.problem(key, f"must be text, got {_kind(value)}")
            return default or ""
        text = str(value).strip()
        if not text:
            self.problem(key, "must not be empty")
        elif pattern is not None and not pattern.match(text):
            self.problem(key, f"{text!r} is not a valid name (lower case letters, digits, _)")
        return text

    def choice(self, key: str, allowed: Iterable[str], default: str) -> str:
        """One of ``allowed`` at ``key`` (``default`` when absent)."""
        options = list(allowed)
        value = self.text(key, default=default)
        if value and value not in options:
            self.problem(key, f"must be one of {', '.join(options)}, got {value!r}")
            return default
        return value

    def integer(self, key: str, default: int, minimum: int, maximum: int) -> int:
        """A whole number in ``[minimum, maximum]`` at ``key`` (``default`` when absent)."""
        value = self.raw(key)
        if value is _MISSING or value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(key, f"must be a whole number, got {_kind(value)}")
            return default
        if not minimum <= value <= maximum:
            self.problem(key, f"must be between {minimum} and {maximum}, got {value}")
            return default
        return value

    def flag(self, key: str, default: bool) -> bool:
        """true or false at ``key`` (``default`` when absent)."""
        value = self.raw(key)
        if value is _MISSING or value is None:
            return default
        if not isinstance(value, bool):
            self.problem(key, f"must be true or false, got {value!r}")
            return default
        return value

    def unknown_keys(self, key: str, section: dict[str, Any], known: Iterable[str]) -> None:
        """Report keys of ``section`` that are not ``known`` (a typo would be ignored)."""
        expected = set(known)
        for name in section:
            if name not in expected:
                where = f"{key}.{name}" if key else str(name)
                self.problem(where, f"unknown key (expected one of {', '.join(sorted(expected))})")

    def check(self) -> None:
        """Raise every problem found, naming the file."""
        if self.problems:
            listed = "\n".join(f"  - {p}" for p in self.problems)
            raise MappingError(f"{self.path} is not a valid mapping:\n{listed}")


def _kind(value: Any) -> str:
    return {dict: "a section", list: "a list", bool: "true/false"}.get(type(value), repr(value))


@dataclass(frozen=True)
class TicketRoute:
    """Where a ticket category lands: a pipeline, its stage, and an optional priority."""

    pipeline: str
    stage: str
    priority: str = ""


@dataclass(frozen=True)
class HubSpotMapping:
    """What ``crm/hubspot.yml`` says (see the file's comments and docs/crms_hubspot.md)."""

    identity_property: str
    email_property: str
    phone_property: str
    first_name_property: str
    last_name_property: str
    note_format: str
    note_include_intents: bool
    note_max_chars: int
    tickets: dict[str, TicketRoute]

    @classmethod
    def load(cls, path: Path) -> HubSpotMapping:
        """Read and check the HubSpot mapping file; :class:`MappingError` lists what is wrong."""
        reader = MappingReader(path)
        reader.unknown_keys("", reader.data, ("contact", "notes", "tickets"))
        contact = reader.section("contact")
        reader.unknown_keys("contact", contact, _CONTACT_KEYS)
        notes = reader.section("notes", required=False)
        reader.unknown_keys("notes", notes, ("format", "include_intents", "max_chars"))
        mapping = cls(
            identity_property=reader.text("contact.identity_property", pattern=_PROPERTY_NAME),
            email_property=reader.text("contact.email_property", "email", _PROPERTY_NAME),
            phone_property=reader.text("contact.phone_property", "phone", _PROPERTY_NAME),
            first_name_property=reader.text(
                "contact.first_name_property", "firstname", _PROPERTY_NAME
            ),
            last_name_property=reader.text(
                "contact.last_name_property", "lastname", _PROPERTY_NAME
            ),
            note_format=reader.choice("notes.format", ("html", "text"), "html"),
            note_include_intents=reader.flag("notes.include_intents", True),
            # HubSpot refuses a note body over 65,536 characters.
            note_max_chars=reader.integer("notes.max_chars", 60000, 1000, 65000),
            tickets=_ticket_routes(reader),
        )
        reader.check()
        return mapping

    def route(self, category: str) -> TicketRoute:
        """The pipeline and stage of a ticket category (unknown categories: ``other``'s)."""
        return self.tickets.get(category, self.tickets["other"])


_CONTACT_KEYS = (
    "identity_property",
    "email_property",
    "phone_property",
    "first_name_property",
    "last_name_property",
)
_PRIORITIES = ("", "LOW", "MEDIUM", "HIGH", "URGENT")


def _ticket_routes(reader: MappingReader) -> dict[str, TicketRoute]:
    tickets = reader.section("tickets")
    reader.unknown_keys("tickets", tickets, TICKET_CATEGORIES)
    routes = {}
    for category in TICKET_CATEGORIES:
        key = f"tickets.{category}"
        entry = reader.section(key)
        if not entry:
            continue  # reported by section() when missing
        reader.unknown_keys(key, entry, ("pipeline", "stage", "priority"))
        routes[category] = TicketRoute(
            pipeline=reader.text(f"{key}.pipeline"),
            stage=reader.text(f"{key}.stage"),
            priority=reader.choice(f"{key}.priority", _PRIORITIES, ""),
        )
    return routes


# Salesforce ------------------------------------------------------------------------------

# Salesforce API names: a letter, then letters, digits and underscores (custom: ``__c``).
_API_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_EXTERNAL_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_]*__c$")
_CASE_PRIORITIES = ("", "Low", "Medium", "High")
# Task.Status is a restricted picklist; these are its standard values.
_TASK_STATUSES = ("Completed", "Not Started", "In Progress", "Waiting on someone else", "Deferred")
_SF_CONTACT_KEYS = (
    "object",
    "external_id_field",
    "identity_field",
    "default_last_name",
    "lead_company",
)
_SF_TASK_KEYS = (
    "external_id_field",
    "subject",
    "type",
    "status",
    "priority",
    "include_intents",
    "max_chars",
)


@dataclass(frozen=True)
class CaseRoute:
    """A Salesforce Case's Status, Origin and optional Priority for a ticket category."""

    status: str
    origin: str
    priority: str = ""


@dataclass(frozen=True)
class SalesforceMapping:
    """What ``crm/salesforce.yml`` says (see the file's comments and docs/crms.md)."""

    contact_object: str  # Contact or Lead
    contact_external_id: str
    identity_field: str  # "" when the channel identity is not kept in Salesforce
    default_last_name: str
    lead_company: str
    task_external_id: str
    task_subject: str  # may name {channel}
    task_type: str
    task_status: str
    task_priority: str
    task_include_intents: bool
    task_max_chars: int
    case_external_id: str
    cases: dict[str, CaseRoute]

    @classmethod
    def load(cls, path: Path) -> SalesforceMapping:
        """Read and check the Salesforce mapping file; :class:`MappingError` lists what is
        wrong."""
        reader = MappingReader(path)
        reader.unknown_keys("", reader.data, ("contact", "tasks", "cases"))
        reader.unknown_keys("contact", reader.section("contact"), _SF_CONTACT_KEYS)
        reader.unknown_keys("tasks", reader.section("tasks"), _SF_TASK_KEYS)
        cases = reader.section("cases")
        reader.unknown_keys("cases", cases, ("external_id_field", *TICKET_CATEGORIES))
        mapping = cls(
            contact_object=reader.choice("contact.object", ("Contact", "Lead"), "Contact"),
            contact_external_id=_external_id(reader, "contact.external_id_field"),
            identity_field=_api_name(reader, "contact.identity_field"),
            default_last_name=reader.text("contact.default_last_name", "Rapport customer")[:80],
            lead_company=reader.text("contact.lead_company", "Unknown (Rapport)")[:255],
            task_external_id=_external_id(reader, "tasks.external_id_field"),
            task_subject=_subject(reader),
            task_type=reader.text("tasks.type", "Chat"),
            task_status=reader.choice("tasks.status", _TASK_STATUSES, "Completed"),
            task_priority=reader.choice("tasks.priority", ("High", "Normal", "Low"), "Normal"),
            task_include_intents=reader.flag("tasks.include_intents", True),
            # Task.Description holds at most 32,000 characters.
            task_max_chars=reader.integer("tasks.max_chars", 30000, 1000, 32000),
            case_external_id=_external_id(reader, "cases.external_id_field"),
            cases=_case_routes(reader),
        )
        reader.check()
        return mapping

    def route(self, category: str) -> CaseRoute:
        """The Case fields of a ticket category (unknown categories: ``other``'s)."""
        return self.cases.get(category, self.cases["other"])

    @property
    def is_lead(self) -> bool:
        """Customers land as Leads (no Contact, and so no ContactId on their Cases)."""
        return self.contact_object == "Lead"


def _api_name(reader: MappingReader, key: str) -> str:
    """An optional field's API name at ``key`` ("" when absent or blank)."""
    if reader.raw(key) in (_MISSING, None, ""):
        return ""
    value = reader.text(key)
    if value and not _API_NAME.match(value):
        reader.problem(key, f"{value!r} is not a field's API name (letters, digits, _)")
    return value


def _external_id(reader: MappingReader, key: str) -> str:
    value = reader.text(key, "Rapport_Key__c")
    if value and not _EXTERNAL_ID.match(value):
        reader.problem(key, f"{value!r} is not a custom field's API name (e.g. Rapport_Key__c)")
    return value


def _subject(reader: MappingReader) -> str:
    subject = reader.text("tasks.subject", "Chat on {channel}")
    try:
        subject.format(channel="telegram")
    except (KeyError, IndexError, ValueError):
        reader.problem("tasks.subject", "may name only {channel} (in braces)")
        return "Chat on {channel}"
    return subject


def _case_routes(reader: MappingReader) -> dict[str, CaseRoute]:
    routes = {}
    for category in TICKET_CATEGORIES:
        key = f"cases.{category}"
        entry = reader.section(key)
        if not entry:
            continue  # reported by section() when missing
        reader.unknown_keys(key, entry, ("status", "origin", "priority"))
        routes[category] = CaseRoute(
            status=reader.text(f"{key}.status"),
            origin=reader.text(f"{key}.origin"),
            priority=reader.choice(f"{key}.priority", _CASE_PRIORITIES, ""),
        )
    return routes
