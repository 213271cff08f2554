"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from crm_bridge.remote.ratelimit import forget_limiters
from tests.fakes.hubspot_api import FakeHubSpotApi
from tests.fakes.salesforce_api import FakeSalesforceApi

HUBSPOT_TOKEN = "pat-eu1-00000000-test-token"


@pytest.fixture
def fake() -> Iterator[FakeHubSpotApi]:
    """A fake HubSpot on 127.0.0.1 (and fresh rate limiters, so tests do not wait on each
    other's requests)."""
    api = FakeHubSpotApi(HUBSPOT_TOKEN)
    api.start()
    forget_limiters()
    yield api
    api.stop()
    forget_limiters()


SALESFORCE_SESSION_ID = "00D000000000001!AQ0AQtest.session.id"


@pytest.fixture
def fake_salesforce() -> Iterator[FakeSalesforceApi]:
    """A fake Salesforce REST API on 127.0.0.1 (and fresh rate limiters)."""
    api = FakeSalesforceApi(SALESFORCE_SESSION_ID)
    api.start()
    forget_limiters()
    yield api
    api.stop()
    forget_limiters()
