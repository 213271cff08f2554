"""Personal data out of customer text: for a trainer's screen and for training data.

A :class:`Masker` finds emails, phone numbers, order numbers, long digit runs (card and
account numbers) and the names of the CRM's customers in a message, and either labels
them (``mask``: "[email]", "[phone]", "[order]", "[number]", "[name]") for display, or
replaces them with fixed, realistic stand-ins (``for_training``) so that an example
written into the NLU data reads naturally but never carries a real value.

Decisions, each held by a test:

* Detectors run one after the other, most specific first (emails, then digit runs,
  then order numbers, then names); a span one detector took is invisible to the next,
  so "bob.osei@example.com" is one email, not a name inside an address.
* A digit run of 7-15 digits starting with ``+`` or ``00`` is a phone number; without
  that prefix, 7-11 digits are a phone number and 12 or more a ``[number]`` (cards have
  12-19). Runs of whole five-digit groups ("10001, 10002") and ISO/European dates are not
  phone numbers. Python's ``\\d`` and ``\\w`` are Unicode-aware, so other scripts'
  digits and accented addresses are masked too.
* Names match whole words only, case- and accent-insensitively ("chloe" finds
  "Chloé"): "Alexander" is not masked when the customer is "Alex" (masking inside words
  would mangle ordinary words far more often than it would catch a nickname). Every part
  of a name of three letters or more counts (a surname alone identifies someone), and so
  does the full name (masked as one ``[name]``). Name parts that are also everyday words
  ("Will", "May", "Price") are masked only when written with a capital, so "I will pay"
  stays intact in training data.

Nothing here logs: the text passing through is the customer's.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import pairwise

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crm_bridge import models

# What each kind of span becomes on a trainer's screen.
LABELS = {
    "email": "[email]",
    "phone": "[phone]",
    "order": "[order]",
    "number": "[number]",
    "name": "[name]",
}
# ... and in training data: fixed values (reserved for documentation: example.com,
# Ofcom's drama range 020 7946 0xxx), annotated with the domain's entity where it has one.
SURROGATES = {
    "email": "[customer@example.com](email)",
    "phone": "[+44 20 7946 0000](phone)",
    "order": "[12345](order_number)",
    "number": "1234 5678 9012 3456",
    "name": "Alex",
}
MIN_NAME_CHARS = 3
# Parts of names that are not names on their own ("Ludwig van Beethoven").
NAME_PARTICLES = frozenset(
    {"van", "von", "der", "den", "del", "della", "des", "dos", "das", "the", "mrs", "miss"}
)
# Name parts that are also common words: masked only when written with a capital.
COMMON_WORDS = frozenset(
    """
    will may june april august summer autumn winter rose grace hope faith joy honey
    mark bill frank rich price cook long young king green white black brown gray grey
    wood hall hill field stone rock bush chase dean drew guy jack ray rob wade don
    sunny amber ruby crystal pearl ivy iris holly jade cash case love bliss star
    major miles page reed rice ward walker baker hunter parker porter turner sharp
    best bright moody wise strong small little dear mercy patience angel
    """.split()
)

_EMAIL = re.compile(r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}")
# As data/nlu/regex.yml's phone pattern, with a little more room: "+44 (0)20 7946 0000".
_DIGIT_RUN = re.compile(r"(?<![\w@])(?:\+|\(\+?)?\d[\d ()\-]{4,28}\d(?![\w@])")
_DATE = re.compile(r"\d{4}-\d{1,2}-\d{1,2}|\d{1,2}-\d{1,2}-\d{2,4}")
_ORDER = re.compile(r"(?<![\w@])#?\d{5}(?!\w|[.,]\d)")
_WORD = re.compile(r"\w+")
_NAME_GAP = re.compile(r"[\s\-'’]{1,3}")
_SPACES = re.compile(r"\s+")
# Rasa reads "[text](entity)" in examples as an annotation; the customer's own
# brackets become parentheses so only our stand-ins annotate anything.
_BRACKETS = str.maketrans("[]", "()")
# Blanks out a taken span for the detectors that come later (neither \w nor \d).
_BLANK = "\x00"


@dataclass(frozen=True)
class Span:
    """One piece of personal data: where it is and what kind (a ``LABELS`` key)."""

    start: int
    end: int
    kind: str


def _fold(word: str) -> str:
    # Case- and accent-insensitive key: "Chloé" and "CHLOE" are one name.
    if word.isascii():
        return word.lower()
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


class Masker:
    """Finds and replaces personal data; immutable and thread-safe once built.

    ``names`` are customers' names as the CRM holds them ("Alice Martin"). Building one
    costs a pass over the names; reuse it (see :class:`MaskerCache`).
    """

    def __init__(
        self, names: Iterable[str] = (), common_words: Iterable[str] = COMMON_WORDS
    ) -> None:
        """``common_words``: name parts masked only when written with a capital."""
        common = frozenset(_fold(word) for word in common_words)
        # A name is a tuple of folded words; the value says whether only a capitalised
        # spelling counts (every word of it is an everyday word).
        keys: dict[tuple[str, ...], bool] = {}
        for name in names:
            words = tuple(_fold(word) for word in _WORD.findall(unicodedata.normalize("NFC", name)))
            if not words:
                continue
            if len(words) > 1 or len(words[0]) >= MIN_NAME_CHARS:
                keys[words] = all(word in common for word in words)
            for word in words:
                if len(word) < MIN_NAME_CHARS or word in NAME_PARTICLES or word.isdigit():
                    continue
                keys.setdefault((word,), word in common)
        self._names = keys
        self._longest = max((len(key) for key in keys), default=0)

    @classmethod
    def from_session(cls, session: Session) -> Masker:
        """A masker for every contact's name in the CRM."""
        return cls(session.execute(select(models.Contact.name)).scalars())

    def spans(self, text: str) -> list[Span]:
        """The personal data in ``text`` (NFC-normalised first), in reading order."""
        text = unicodedata.normalize("NFC", text or "")
        found: list[Span] = []
        work = text
        for detect in (_emails, _digit_runs, _orders, self._name_spans):
            new = detect(work)
            for span in new:
                work = work[: span.start] + _BLANK * (span.end - span.start) + work[span.end :]
            found.extend(new)
        return sorted(found, key=lambda span: span.start)

    def mask(self, text: str) -> str:
        """``text`` for a person's screen: personal data replaced by labels ("[email]")."""
        text = unicodedata.normalize("NFC", text or "")
        return _replace(text, self.spans(text), lambda span, _: LABELS[span.kind])

    def for_training(self, text: str) -> str:
        """``text`` as an NLU training example: personal data replaced by fixed stand-ins
        (annotated as the domain's ``email``, ``phone`` and ``order_number`` entities),
        the customer's own square brackets made round, whitespace collapsed to one line."""
        text = unicodedata.normalize("NFC", text or "")
        text = _SPACES.sub(" ", text).strip()

        def surrogate(span: Span, original: str) -> str:
            # "#10001" keeps its "#" outside the annotation: Rasa's regex wants digits.
            prefix = "#" if span.kind == "order" and original.startswith("#") else ""
            return prefix + SURROGATES[span.kind]

        return _replace(text, self.spans(text), surrogate, plain=lambda s: s.translate(_BRACKETS))

    def _name_spans(self, text: str) -> list[Span]:
        if not self._names:
            return []
        words = list(_WORD.finditer(text))
        folded = [_fold(word.group()) for word in words]
        spans: list[Span] = []
        i = 0
        while i < len(words):
            length = self._name_at(text, words, folded, i)
            if length:
                spans.append(Span(words[i].start(), words[i + length - 1].end(), "name"))
                i += length
            else:
                i += 1
        return spans

    def _name_at(self, text: str, words: list[re.Match[str]], folded: list[str], i: int) -> int:
        # The longest known name starting at word i whose words are only separated by
        # spaces, hyphens or apostrophes ("Jean-Luc", "O'Brien"); 0 when none.
        for length in range(min(self._longest, len(words) - i), 0, -1):
            capital_only = self._names.get(tuple(folded[i : i + length]))
            if capital_only is None:
                continue
            if capital_only and not words[i].group()[0].isupper():
                continue
            run = words[i : i + length]
            if all(_NAME_GAP.fullmatch(text[a.end() : b.start()]) for a, b in pairwise(run)):
                return length
        return 0


def _emails(text: str) -> list[Span]:
    return [Span(m.start(), m.end(), "email") for m in _EMAIL.finditer(text)]


def _digit_runs(text: str) -> list[Span]:
    spans = []
    for match in _DIGIT_RUN.finditer(text):
        raw = match.group()
        groups = re.findall(r"\d+", raw)
        digits = sum(len(group) for group in groups)
        if digits < 7 or _DATE.fullmatch(raw):
            continue
        if len(groups) > 1 and all(len(group) == 5 for group in groups):
            continue  # a list of order numbers: the order detector labels each
        international = raw.lstrip("(").startswith(("+", "00"))
        if international and digits <= 15:
            kind = "phone"
        elif digits >= 12:
            kind = "number"
        else:
            kind = "phone"
        spans.append(Span(match.start(), match.end(), kind))
    return spans


def _orders(text: str) -> list[Span]:
    return [Span(m.start(), m.end(), "order") for m in _ORDER.finditer(text)]


def _replace(
    text: str,
    spans: list[Span],
    replacement: Callable[[Span, str], str],
    plain: Callable[[str], str] = lambda s: s,
) -> str:
    parts = []
    cursor = 0
    for span in spans:
        parts.append(plain(text[cursor : span.start]))
        parts.append(replacement(span, text[span.start : span.end]))
        cursor = span.end
    parts.append(plain(text[cursor:]))
    return "".join(parts)


class MaskerCache:
    """A :class:`Masker` per CRM that is rebuilt only when the contacts change.

    Call it with a session: one cheap query (count and latest update of the contacts)
    decides whether the cached masker still holds every name. Thread-safe; meant to be
    kept for the life of the process (e.g. one per :class:`crm_bridge.inbox.Inbox`).
    """

    def __init__(self, build: Callable[[Session], Masker] = Masker.from_session) -> None:
        """``build`` makes a masker from a session (default: every contact's name)."""
        self._build = build
        self._lock = threading.Lock()
        self._fingerprint: tuple[object, ...] | None = None
        self._masker: Masker | None = None

    def __call__(self, session: Session) -> Masker:
        """The masker for the contacts as they are now."""
        fingerprint = tuple(
            session.execute(
                select(
                    func.count(models.Contact.id),
                    func.max(models.Contact.id),
                    func.max(models.Contact.updated_at),
                )
            ).one()
        )
        with self._lock:
            if self._masker is not None and fingerprint == self._fingerprint:
                return self._masker
        masker = self._build(session)
        with self._lock:
            self._masker, self._fingerprint = masker, fingerprint
        return masker
