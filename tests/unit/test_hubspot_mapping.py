"""The HubSpot mapping file (crm/hubspot.yml) and its checks, HubSpot's settings, and how a
conversation and a ticket read once rendered for the remote CRM."""

from __future__ import annotations

from pathlib import Path

import pytest

from crm_bridge import settings as crm_settings
from crm_bridge.errors import SettingsError
from crm_bridge.remote.mapping import TICKET_CATEGORIES, HubSpotMapping, MappingError
from crm_bridge.remote.render import contact_identities, conversation_text, ticket_text
from crm_bridge.settings import PROJECT_ROOT

SHIPPED = PROJECT_ROOT / "crm" / "hubspot.yml"
VALID = """
contact:
  identity_property: rapport_identity
tickets:
""" + "".join(f"  {c}: {{pipeline: '0', stage: '1'}}\n" for c in TICKET_CATEGORIES)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hubspot.yml"
    path.write_text(text)
    return path


def test_the_shipped_mapping_is_valid_and_routes_every_category() -> None:
    mapping = HubSpotMapping.load(SHIPPED)
    assert mapping.identity_property == "rapport_identity"
    assert set(mapping.tickets) == set(TICKET_CATEGORIES)
    assert mapping.route("complaint").priority == "HIGH"
    assert mapping.route("no-such-category") == mapping.route("other")
    assert mapping.note_format == "html" and mapping.note_max_chars == 60000


def test_defaults_fill_what_a_minimal_file_leaves_out(tmp_path: Path) -> None:
    mapping = HubSpotMapping.load(write(tmp_path, VALID))
    assert (mapping.email_property, mapping.phone_property) == ("email", "phone")
    assert mapping.note_format == "html" and mapping.note_include_intents
    assert mapping.route("return").pipeline == "0" and mapping.route("return").priority == ""


def test_numbers_are_read_as_pipeline_ids(tmp_path: Path) -> None:
    mapping = HubSpotMapping.load(write(tmp_path, VALID.replace("'0'", "12345")))
    assert mapping.route("delivery").pipeline == "12345"


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (
            ("stage: '1'}\n  delivery", "stagee: '1'}\n  delivery"),
            "tickets.complaint.stage: missing",
        ),
        (
            ("stage: '1'}\n  delivery", "stagee: '1'}\n  delivery"),
            "tickets.complaint.stagee: unknown key",
        ),
        (("  other: {pipeline: '0', stage: '1'}\n", ""), "tickets.other: missing"),
        (
            ("rapport_identity", "Rapport Identity"),
            "contact.identity_property: 'Rapport Identity' is not",
        ),
        (
            ("tickets:", "notes: {format: markdown}\ntickets:"),
            "notes.format: must be one of html, text",
        ),
        (("tickets:", "notes: {max_chars: 99999}\ntickets:"), "notes.max_chars: must be between"),
        (
            ("tickets:", "notes: {include_intents: maybe}\ntickets:"),
            "notes.include_intents: must be true",
        ),
        (("tickets:", "ticket: {}\ntickets:"), "ticket: unknown key"),
        (
            (
                "complaint: {pipeline: '0', stage: '1'}",
                "complaint: {pipeline: '0', stage: '1', priority: high}",
            ),
            "tickets.complaint.priority: must be one of",
        ),
        (("  identity_property: rapport_identity\n", ""), "contact.identity_property: missing"),
    ],
)
def test_a_wrong_file_is_refused_naming_the_file_and_the_key(
    tmp_path: Path, change: tuple[str, str], complaint: str
) -> None:
    path = write(tmp_path, VALID.replace(*change, 1))
    with pytest.raises(MappingError) as caught:
        HubSpotMapping.load(path)
    assert str(path) in str(caught.value)
    assert complaint in str(caught.value)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "contact: {identity_property: x-y}\ntickets: {complaint: 3}\n")
    with pytest.raises(MappingError) as caught:
        HubSpotMapping.load(path)
    message = str(caught.value)
    assert "contact.identity_property" in message
    assert "tickets.complaint: must be a section" in message
    assert "tickets.delivery: missing" in message and "tickets.other: missing" in message


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        (None, "the mapping file does not exist"),
        ("contact: [unclosed", "cannot be read as YAML"),
        ("- a list", "must be a YAML mapping"),
    ],
)
def test_an_unreadable_file_is_refused(tmp_path: Path, text: str | None, complaint: str) -> None:
    path = tmp_path / "hubspot.yml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(MappingError, match=complaint):
        HubSpotMapping.load(path)


def test_mapping_errors_are_settings_errors() -> None:
    assert issubclass(MappingError, SettingsError)


def test_hubspot_needs_its_token() -> None:
    with pytest.raises(SettingsError, match="HUBSPOT_ACCESS_TOKEN"):
        crm_settings.load({"CRM_BACKEND": "hubspot"})
    settings = crm_settings.load({"CRM_BACKEND": "hubspot", "HUBSPOT_ACCESS_TOKEN": "pat-x"})
    assert settings.hubspot_api_base_url == "https://api.hubapi.com"
    assert settings.hubspot_mapping == SHIPPED and settings.hubspot_requests_per_10s == 190
    assert crm_settings.load({}).hubspot_access_token == ""  # sql needs none


def test_the_request_budget_must_be_sensible() -> None:
    with pytest.raises(SettingsError, match="HUBSPOT_REQUESTS_PER_10S"):
        crm_settings.load({"HUBSPOT_REQUESTS_PER_10S": "0"})
    assert crm_settings.load({"HUBSPOT_REQUESTS_PER_10S": "100"}).hubspot_requests_per_10s == 100


CONVERSATION = {
    "channel": "web",
    "started_at": "2024-05-01T10:00:00+00:00",
    "ended_at": "2024-05-01T10:04:00+00:00",
    "outcome": "resolved_by_bot",
    "intents": ["order_status"],
    "transcript": [
        {"author": "customer", "time": "2024-05-01T10:00:00+00:00", "text": "hi <b>there</b>"},
        {"author": "bot", "time": "2024-05-01T10:00:01+00:00", "text": "Hello!"},
    ],
}


def test_a_conversation_reads_as_plain_text() -> None:
    text = conversation_text(CONVERSATION, "[rapport:interaction:1]", False, False, 60000)
    assert text.splitlines() == [
        "Conversation on web, 2024-05-01 10:00 UTC to 2024-05-01 10:04 UTC"
        " · outcome: resolved_by_bot",
        "",
        "10:00:00 Customer: hi <b>there</b>",
        "10:00:01 Assistant: Hello!",
        "[rapport:interaction:1]",
    ]


def test_a_conversation_for_a_crm_that_shows_html_is_escaped_even_as_text() -> None:
    text = conversation_text(CONVERSATION, "[rapport:interaction:1]", False, False, 60000, True)
    assert "<br>10:00:00 Customer: hi &lt;b&gt;there&lt;/b&gt;<br>" in text
    assert text.endswith("<br>[rapport:interaction:1]")


def test_a_long_transcript_is_cut_but_keeps_its_heading_and_marker() -> None:
    lines = [{"author": "customer", "time": "2024-05-01T10:00:00", "text": "x" * 100}] * 500
    long = {**CONVERSATION, "transcript": lines}
    text = conversation_text(long, "[rapport:interaction:1]", True, True, 5000)
    assert len(text) <= 5000
    assert text.startswith("<p><strong>Conversation on web")
    assert "more messages are in Rapport's transcript" in text
    assert text.endswith("<p>[rapport:interaction:1]</p>")


def test_a_ticket_description_and_identities() -> None:
    text = ticket_text(
        {"description": "Broken", "order_number": "10001", "reference": "T-000001"},
        "[rapport:ticket:1]",
    )
    assert text == "Broken\n\nOrder: 10001\n\nRapport reference: T-000001\n\n[rapport:ticket:1]"
    person = {"identities": [{"channel": "telegram", "external_id": "42"}, "Slack:U1", ""]}
    assert contact_identities(person) == ["telegram:42", "slack:u1"]
