"""Masking personal data in customer text: for a trainer's screen and for training data."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from rasa.shared.nlu.training_data.entities_parser import parse_training_example
from sqlalchemy import update

from crm_bridge import models
from crm_bridge.db import session_factory, unit_of_work
from crm_bridge.masking import Masker, MaskerCache

REGEX_FILE = Path(__file__).resolve().parents[2] / "data" / "nlu" / "regex.yml"
NAMES = ["Alice Martin", "Bob Osei", "Chloé Dubois", "Alex Li", "Jean-Luc O'Brien", "Will Price"]


@pytest.fixture(scope="module")
def masker() -> Masker:
    return Masker(NAMES)


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        # Emails, with subdomains, accents, a sentence's full stop after them.
        ("mail me at alice@example.com.", "mail me at [email]."),
        ("it's a.b-c+shop@mail.example.co.uk ok", "it's [email] ok"),
        ("écrivez à chloé@exemple.fr", "écrivez à [email]"),
        # Phone numbers: international, national, US style, with a trunk prefix.
        ("call +44 7700 900123 please", "call [phone] please"),
        ("call 07700 900123", "call [phone]"),
        ("my number is (555) 123-4567", "my number is [phone]"),
        ("+44 (0)20 7946 0018 is the office", "[phone] is the office"),
        ("0044 20 7946 0018", "[phone]"),
        ("+447700900123", "[phone]"),
        # Order numbers, with or without '#', and lists of them.
        ("where is 10001", "where is [order]"),
        ("status of #10003?", "status of [order]?"),
        ("orders 10001, 10002 and 10003", "orders [order], [order] and [order]"),
        ("orders 10001 10002", "orders [order] [order]"),
        ("order#10001", "order#[order]"),
        # Card-like digit runs.
        ("card 4111 1111 1111 1111 expires", "card [number] expires"),
        ("card 4111-1111-1111-1111", "card [number]"),
        ("ref 123456789012345678901", "ref [number]"),
        # Names: any case, full names as one, surnames alone, possessives.
        ("I'm Alice Martin", "I'm [name]"),
        ("ask ALICE or bob", "ask [name] or [name]"),
        ("Mrs Martin called", "Mrs [name] called"),
        ("Bob's order", "[name]'s order"),
        ("chloe dubois here", "[name] here"),
        ("CHLOÉ", "[name]"),
        ("Jean-Luc O'Brien speaking", "[name] speaking"),
        ("O'Brien speaking", "O'[name] speaking"),
        ("Alex Li said", "[name] said"),
    ],
)
def test_personal_data_is_labelled(masker: Masker, text: str, masked: str) -> None:
    assert masker.mask(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "Alexander the Great",  # "Alex" is a customer: names only match whole words
        "my alexa broke",
        "I will pay the price",  # "Will Price" is a customer; the words are everyday words
        "it costs 10001.50",  # a price, not an order number
        "postcode 123456",  # six digits: not an order number, too short for a phone
        "delivered 2024-05-12 or 12-05-2024",  # dates are not phone numbers
        "tracking code DPD-5521",
        "abc10001",
        "Li said hi",  # name parts shorter than three letters are not masked alone
        "",
    ],
)
def test_ordinary_text_is_left_alone(masker: Masker, text: str) -> None:
    assert masker.mask(text) == text


def test_everyday_words_that_are_names_are_masked_when_capitalised(masker: Masker) -> None:
    assert masker.mask("this is Will") == "this is [name]"
    assert masker.mask("Will Price here") == "[name] here"
    assert masker.mask("the price will do") == "the price will do"


def test_the_first_detector_to_claim_a_span_keeps_it(masker: Masker) -> None:
    # A name inside an address, digits inside an address or a phone number: one span.
    assert masker.mask("bob.osei@example.com and bob") == "[email] and [name]"
    assert masker.mask("alice10001@example.com") == "[email]"
    assert masker.mask("+44 20 1000 1000") == "[phone]"
    assert masker.mask("Alice Martin alice@example.com") == "[name] [email]"
    assert [span.kind for span in masker.spans("Bob 10001 +447700900123 x@y.io")] == [
        "name",
        "order",
        "phone",
        "email",
    ]


def test_unicode_digits_and_decomposed_accents_are_masked(masker: Masker) -> None:
    assert masker.mask("order ١٠٠٠١ please") == "order [order] please"  # Arabic-Indic digits
    assert masker.mask("order １０００１") == "order [order]"  # full-width digits
    assert masker.mask("Chloe\u0301 here") == "[name] here"  # "é" as "e" + combining accent
    assert masker.mask("Zoë 😀 at zoë@example.com") == "Zoë 😀 at [email]"


def test_masks_at_least_what_the_bots_regexes_extract(masker: Masker) -> None:
    # The NLU's regex entities (data/nlu/regex.yml) are personal data by definition.
    patterns = {
        block["regex"]: [line[2:] for line in block["examples"].splitlines() if line]
        for block in yaml.safe_load(REGEX_FILE.read_text())["nlu"]
    }
    samples = [
        "order 10001 for alice@example.com",
        "call me on +44 7700 900123 or 020 7946 0018",
        "shop.orders+x@mail.example.org and 31337",
        "my mobile: 07700-900-456",
    ]
    for entity, regexes in patterns.items():
        for sample in samples:
            for regex in regexes:
                for match in re.finditer(regex, sample):
                    spans = masker.spans(sample)
                    assert any(s.start <= match.start() and match.end() <= s.end for s in spans), (
                        entity,
                        sample,
                        match.group(),
                    )


@pytest.mark.parametrize(
    ("text", "example"),
    [
        (
            "I'm Alice, where is 10001? mail alice@example.com or call +44 7700 900123",
            "I'm Alex, where is [12345](order_number)? mail [customer@example.com](email) or "
            "call [+44 20 7946 0000](phone)",
        ),
        ("status of #10003", "status of #[12345](order_number)"),
        ("card 4111 1111 1111 1111", "card 1234 5678 9012 3456"),
        ("hi\n\n  it's   Bob\t", "hi it's Alex"),
        # Customers' own brackets would read as entity annotations: made round.
        ("[10001](email) is wrong", "([12345](order_number))(email) is wrong"),
        ("see [this]{x}", "see (this){x}"),
    ],
)
def test_training_examples_carry_stand_ins(masker: Masker, text: str, example: str) -> None:
    assert masker.for_training(text) == example


def test_rasa_reads_the_stand_ins_as_the_domains_entities(masker: Masker) -> None:
    example = masker.for_training(
        "Bob here [sic], order #10001, bob@example.com, 07700 900123, card 4111111111111111"
    )
    message = parse_training_example(example, "order_status")
    assert message.get("text") == (
        "Alex here (sic), order #12345, customer@example.com, +44 20 7946 0000, "
        "card 1234 5678 9012 3456"
    )
    entities = [(e["entity"], e["value"]) for e in message.get("entities")]
    assert entities == [
        ("order_number", "12345"),
        ("email", "customer@example.com"),
        ("phone", "+44 20 7946 0000"),
    ]
    domain = yaml.safe_load((REGEX_FILE.parents[2] / "domain.yml").read_text())
    assert {name for name, _ in entities} <= set(domain["entities"])


def test_training_examples_never_carry_the_real_values(masker: Masker) -> None:
    secrets = [
        "alice@example.com",
        "7700 900123",
        "10001",
        "4111 1111 1111 1111",
        "Alice",
        "Martin",
        "Osei",
        "Chloé",
        "Jean-Luc",
    ]
    text = (
        "Hi, Alice Martin here (or Chloé? Jean-Luc?), Osei's friend; alice@example.com, "
        "+44 7700 900123, orders 10001 and #10001, card 4111 1111 1111 1111"
    )
    for value in (masker.for_training(text), masker.mask(text)):
        assert not any(secret.casefold() in value.casefold() for secret in secrets), value


def test_a_masker_from_the_crm_knows_its_customers(crm_url: str) -> None:
    with session_factory(crm_url)() as session:
        masker = Masker.from_session(session)
    # Seeded: Alice Martin, Bob Osei, Chloé Dubois.
    assert masker.mask("alice, Osei and chloe dubois") == "[name], [name] and [name]"
    assert masker.mask("Dana wrote") == "Dana wrote"


def test_the_cache_rebuilds_only_when_contacts_change(crm_url: str) -> None:
    factory = session_factory(crm_url)
    cache = MaskerCache()
    with factory() as session:
        first = cache(session)
        assert cache(session) is first
    with unit_of_work(factory) as session:
        session.add(models.Contact(name="Dana Scully", email="dana@example.com"))
    with factory() as session:
        second = cache(session)
    assert second is not first
    assert second.mask("Dana and Alice") == "[name] and [name]"
    with unit_of_work(factory) as session:
        session.execute(
            update(models.Contact)
            .where(models.Contact.email == "dana@example.com")
            .values(name="Fox Mulder", updated_at=models.utcnow())
        )
    with factory() as session:
        third = cache(session)
    assert third.mask("Fox and Dana") == "[name] and Dana"
