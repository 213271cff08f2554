"""A CRM that does not answer while a customer waits: the action gives up after about 2 s
and answers politely with a person offered (issue #19), on a real PostgreSQL whose table
is locked by another session and on a server that accepts connections and never speaks."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import create_engine, text

from actions.crm import crm_url, reset_gateway
from actions.order_status import ActionCheckOrderStatus
from tests.unit.conftest import domain as real_domain
from tests.unit.conftest import make_tracker

pytestmark = pytest.mark.integration

# Generous: the point is that the turn ends instead of hanging, not a timing goal.
GIVE_UP_BOUND_SECONDS = 8


def check_order(domain: dict) -> tuple[CollectingDispatcher, float]:
    dispatcher = CollectingDispatcher()
    tracker = make_tracker(sender="demo-alice", slots={"order_number": "10001"})
    started = time.monotonic()
    ActionCheckOrderStatus().run(dispatcher, tracker, domain)
    return dispatcher, time.monotonic() - started


def assert_polite_with_a_person(dispatcher: CollectingDispatcher) -> None:
    """Either handed to a person at once (the handoff desk still answered) or told the
    records are out of reach with a "Talk to a person" button (utter_crm_unavailable)."""
    first = dispatcher.messages[0]
    handed_over = (first.get("text") or "").startswith("Sorry, I can't reach our customer records")
    assert handed_over or first.get("response") == "utter_crm_unavailable", first


domain = real_domain  # the unit tests' fixture: the real domain.yml


@pytest.fixture
def actions_on(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    reset_gateway()
    yield
    reset_gateway()


def test_the_customer_url_carries_the_two_second_timeouts(
    postgres_crm_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRM_DATABASE_URL", postgres_crm_url)
    url = crm_url()
    assert "connect_timeout=2" in url and "statement_timeout%3D2000" in url
    with create_engine(url).connect() as connection:
        assert connection.execute(text("SHOW statement_timeout")).scalar() == "2s"
        assert connection.execute(text("SHOW lock_timeout")).scalar() == "2s"


def test_a_locked_crm_gets_a_polite_answer_instead_of_a_hang(
    postgres_crm_url: str, monkeypatch: pytest.MonkeyPatch, actions_on: None, domain: dict
) -> None:
    monkeypatch.setenv("CRM_DATABASE_URL", postgres_crm_url)
    dispatcher, _ = check_order(domain)  # healthy first: the order is found
    assert "Order 10001" in dispatcher.messages[0]["text"]

    blocker = create_engine(postgres_crm_url).connect()
    transaction = blocker.begin()
    try:
        blocker.execute(text("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE"))
        dispatcher, elapsed = check_order(domain)
    finally:
        transaction.rollback()
        blocker.close()
    assert_polite_with_a_person(dispatcher)
    assert elapsed < GIVE_UP_BOUND_SECONDS

    dispatcher, _ = check_order(domain)  # and served again once the lock is gone
    assert "Order 10001" in dispatcher.messages[0]["text"]


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(5)
    for connection in accepted:
        connection.close()
    listener.close()


def test_a_crm_that_never_answers_gets_a_polite_answer(
    silent_server: int, monkeypatch: pytest.MonkeyPatch, actions_on: None, domain: dict
) -> None:
    monkeypatch.setenv(
        "CRM_DATABASE_URL", f"postgresql+psycopg2://rapport@127.0.0.1:{silent_server}/crm"
    )
    dispatcher, elapsed = check_order(domain)
    assert_polite_with_a_person(dispatcher)
    assert elapsed < GIVE_UP_BOUND_SECONDS
