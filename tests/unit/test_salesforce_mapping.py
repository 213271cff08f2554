"""crm/salesforce.yml is read and checked at start-up: every problem at once, each naming
the file, the key and what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from crm_bridge.remote.mapping import CaseRoute, MappingError, SalesforceMapping
from crm_bridge.settings import PROJECT_ROOT, CrmSettings

EXAMPLE = PROJECT_ROOT / "crm" / "salesforce.yml"


def written(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "salesforce.yml"
    path.write_text(text)
    return path


def test_the_shipped_example_is_valid() -> None:
    mapping = SalesforceMapping.load(EXAMPLE)
    assert mapping.contact_object == "Contact" and not mapping.is_lead
    assert mapping.contact_external_id == mapping.task_external_id == "Rapport_Key__c"
    assert mapping.task_status == "Completed" and mapping.task_type == "Chat"
    assert mapping.route("complaint") == CaseRoute("New", "Web", "High")
    assert mapping.route("no-such-category") == mapping.cases["other"]


def test_the_default_setting_names_the_example() -> None:
    assert CrmSettings().salesforce_mapping == EXAMPLE


def test_every_problem_is_reported_with_its_key(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    for old, new in (
        ("object: Contact", "object: Account"),
        (
            "  external_id_field: Rapport_Key__c\n  # Optional",
            "  external_id_field: RapportKey\n  # Optional",
        ),
        ("status: Completed", "status: Done"),
        ("subject: Chat on {channel}", "subject: Chat with {customer}"),
        ("max_chars: 30000", "max_chars: 50000"),
        ("    priority: High\n  delivery:", "    priority: Urgent\n    colour: red\n  delivery:"),
    ):
        assert old in text
        text = text.replace(old, new, 1)
    with pytest.raises(MappingError) as caught:
        SalesforceMapping.load(written(tmp_path, text))
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'salesforce.yml'} is not a valid mapping")
    for expected in (
        "contact.object: must be one of Contact, Lead, got 'Account'",
        "contact.external_id_field: 'RapportKey' is not a custom field's API name",
        "tasks.status: must be one of",
        "tasks.subject: may name only {channel}",
        "tasks.max_chars: must be between 1000 and 32000, got 50000",
        "cases.complaint.priority: must be one of",
        "cases.complaint.colour: unknown key",
    ):
        assert expected in message


def test_missing_sections_and_categories_are_named(tmp_path: Path) -> None:
    with pytest.raises(MappingError) as caught:
        SalesforceMapping.load(
            written(tmp_path, "contact: {}\ncases:\n  complaint: {status: New}\n")
        )
    message = str(caught.value)
    assert "tasks: missing" in message
    assert "cases.complaint.origin: missing" in message
    assert "cases.return: missing" in message


def test_lead_mode_and_no_identity_field(tmp_path: Path) -> None:
    text = EXAMPLE.read_text().replace("object: Contact", "object: Lead")
    text = text.replace("identity_field: Rapport_Identity__c", "identity_field:")
    mapping = SalesforceMapping.load(written(tmp_path, text))
    assert mapping.is_lead and mapping.identity_field == ""
    assert mapping.lead_company == "Unknown (Rapport)"


def test_a_missing_or_unreadable_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="does not exist"):
        SalesforceMapping.load(tmp_path / "nope.yml")
    with pytest.raises(MappingError, match="must be a YAML mapping"):
        SalesforceMapping.load(written(tmp_path, "- a list\n"))


def test_salesforce_without_credentials_is_refused_naming_the_variables(tmp_path: Path) -> None:
    from crm_bridge.errors import SettingsError
    from crm_bridge.settings import load

    base = {"CRM_BACKEND": "salesforce", "RAPPORT_VAR_DIR": str(tmp_path)}
    with pytest.raises(SettingsError) as caught:
        load(base)
    for name in ("SALESFORCE_ACCESS_TOKEN", "SALESFORCE_USERNAME", "SALESFORCE_CONSUMER_KEY"):
        assert name in str(caught.value)
    with pytest.raises(SettingsError, match="SALESFORCE_INSTANCE_URL"):
        load({**base, "SALESFORCE_ACCESS_TOKEN": "00D!x"})
    login = {"SALESFORCE_USERNAME": "bot@example.com", "SALESFORCE_PASSWORD": "pw"}
    assert load({**base, **login}).salesforce_login() == "password"


@pytest.mark.parametrize(
    ("login_url", "accepted"),
    [
        ("https://login.salesforce.com", True),
        ("https://acme.my.salesforce.com/", True),
        ("http://127.0.0.1:8443", True),  # the tests' stand-in
        ("http://login.salesforce.com", False),  # the password would travel in clear
        ("login.salesforce.com", False),
    ],
)
def test_the_login_url_must_be_https(tmp_path: Path, login_url: str, accepted: bool) -> None:
    from crm_bridge.errors import SettingsError
    from crm_bridge.settings import load

    environ = {
        "CRM_BACKEND": "salesforce",
        "RAPPORT_VAR_DIR": str(tmp_path),
        "SALESFORCE_USERNAME": "bot@example.com",
        "SALESFORCE_PASSWORD": "pw",
        "SALESFORCE_LOGIN_URL": login_url,
    }
    if accepted:
        assert load(environ).salesforce_login_url == login_url
    else:
        with pytest.raises(SettingsError, match="SALESFORCE_LOGIN_URL must be an https://"):
            load(environ)
