"""Request validation of the REST channel."""

from __future__ import annotations

import json

import pytest

from connectors.rest import BadRequest, parse_message_request


def body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def test_a_valid_message_is_accepted_with_unicode() -> None:
    sender, text, metadata = parse_message_request(
        body(sender=" web-42 ", message="Où est ma commande ? 📦", metadata={"locale": "fr"})
    )
    assert (sender, text, metadata) == ("web-42", "Où est ma commande ? 📦", {"locale": "fr"})


@pytest.mark.parametrize(
    ("raw", "complaint"),
    [
        (b"{not json", "JSON object"),
        (b"", "JSON object"),
        (b"[1, 2]", "JSON object"),
        (body(message="hi"), "'sender'"),
        (body(sender="", message="hi"), "'sender'"),
        (body(sender=7, message="hi"), "'sender'"),
        (body(sender="x" * 129, message="hi"), "'sender'"),
        (body(sender="a"), "'message' must be a string"),
        (body(sender="a", message=None), "'message' must be a string"),
        (body(sender="a", message="hi", metadata=[1]), "'metadata'"),
        (body(sender="a", message="hi", metadata={"k": "v" * 5000}), "'metadata'"),
        (b"\xff\xfe", "JSON object"),
    ],
)
def test_bad_requests_name_the_problem(raw: bytes, complaint: str) -> None:
    with pytest.raises(BadRequest, match=complaint):
        parse_message_request(raw)


def test_the_caller_cannot_choose_the_channel() -> None:
    sender, text, _ = parse_message_request(
        body(sender="123456", message="hi", input_channel="telegram")
    )
    from connectors.rest import RestChannel

    assert RestChannel.name() == "rest"
    assert (sender, text) == ("123456", "hi")


@pytest.mark.parametrize("text", ["", "   ", "x" * 100_000])
def test_empty_and_long_messages_are_the_inbound_steps_to_answer(text: str) -> None:
    # Not a malformed request: the customer gets a clarifying or "shorter please" reply.
    assert parse_message_request(body(sender="a", message=text))[1] == text
