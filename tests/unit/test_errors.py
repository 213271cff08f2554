"""One error family: each kind answers with one HTTP status, in one place."""

from __future__ import annotations

import pytest
from rasa_sdk.executor import CollectingDispatcher

from actions.handoff import tell_crm_failure
from bot.agent_console import AgentConsoleError
from bot.settings import SettingsError
from bot.web_inbox import InboxUnavailable
from connectors.refusals import status_for
from connectors.rest import BadRequest
from crm_bridge import errors


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.HandoffNotFound("No handoff #9."), 404),
        (errors.OrderNotFound("x"), 404),
        (errors.ContactNotFound("x"), 404),
        (errors.HandoffConflict("taken"), 409),
        (errors.InvalidInput("email", "bad"), 400),
        (BadRequest("'sender' is missing"), 400),
        (errors.CrmUnavailable("down"), 503),
        (AgentConsoleError("slack down"), 503),
        (InboxUnavailable("redis down"), 503),
        (errors.RapportError("anything else of ours"), 500),
    ],
)
def test_each_kind_has_one_status(error: errors.RapportError, status: int) -> None:
    assert status_for(error) == status


def test_every_error_of_ours_shares_the_root() -> None:
    for kind in (AgentConsoleError, SettingsError, BadRequest, InboxUnavailable):
        assert issubclass(kind, errors.RapportError), kind


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (errors.OrderNotFound("internal detail"), "couldn't find that"),
        (errors.HandoffConflict("internal detail"), "can't be done right now"),
        (errors.InvalidInput("email", "That doesn't look like an email address."), "email"),
        (errors.RapportError("internal detail"), "something went wrong"),
    ],
)
def test_each_kind_has_one_customer_wording(error: errors.RapportError, said: str) -> None:
    dispatcher = CollectingDispatcher()
    tell_crm_failure(dispatcher, error)
    [message] = dispatcher.messages
    assert said in message["text"] and "internal detail" not in message["text"]


def test_an_unavailable_system_has_its_response() -> None:
    dispatcher = CollectingDispatcher()
    tell_crm_failure(dispatcher, errors.CrmUnavailable("db down"))
    assert [m["response"] for m in dispatcher.messages] == ["utter_crm_unavailable"]
