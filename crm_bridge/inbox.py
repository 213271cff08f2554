"""The trainer's inbox: real customer messages the assistant was unsure about.

A customer line is in the inbox until a trainer decides on it (an ``InboxReview`` row)
when any of these holds:

* ``low_confidence``: the NLU's confidence in its intent was below a threshold;
* ``fallback``: the intent is the fallback intent (Rasa's ``nlu_fallback``);
* ``before_handoff``: it is the last thing the customer wrote before the conversation
  went to a person (button payloads such as ``/request_human`` and the request for a
  person itself left out: the line before them is what the bot failed at).

Lines a trainer cannot label are never listed: button payloads (text starting with
``/``), empty lines and the inbound step's placeholders (``skip_intents``).

Everything that leaves this module is masked (:mod:`crm_bridge.masking`): the inbox,
the conversation view and the training examples carry no email, phone number, order
number, card number or customer name. Nothing here logs customer text.

Queries stay few and narrow (no N+1): listing the inbox is one query for the lines,
one for the agents' replies and one that checks the masker is current.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, exists, func, or_, select, true, union
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased, sessionmaker
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import ColumnElement

from crm_bridge import models
from crm_bridge.db import unit_of_work
from crm_bridge.errors import Conflict, InvalidInput, NotFound
from crm_bridge.masking import Masker, MaskerCache

REASONS = ("low_confidence", "fallback", "before_handoff")
DECISIONS = ("labelled", "out_of_scope", "dismissed")
# The inbound step's stand-ins for text kept from the NLU (connectors/inbound.py): the
# intent is certain and there is nothing to label.
DEFAULT_SKIP_INTENTS = frozenset({"inbound_too_long", "inbound_unclear"})
# Asking for a person is understood well enough; the line before it is the one to read.
DEFAULT_REQUEST_INTENTS = frozenset({"request_human"})
MAX_AGENT_REPLIES = 3
MAX_LIMIT = 1000
_INTENT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]{0,99}")
_MAX_REVIEWER_CHARS = 80

M = models.InteractionMessage  # every query here is about transcript lines


@dataclass(frozen=True)
class InboxItem:
    """One customer line waiting for a trainer; ``text`` and replies are masked."""

    message_id: int
    interaction_id: int
    channel: str | None
    sent_at: datetime
    text: str
    intent: str | None
    confidence: float | None
    reasons: tuple[str, ...]
    #: The first agents' replies in the conversation, when it was handed to a person.
    agent_replies: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReviewedExample:
    """A decision taken; ``example`` (masked, with stand-ins) is what to write into the
    training data (``None`` for a dismissed message)."""

    message_id: int
    decision: str
    intent: str | None
    example: str | None


@dataclass(frozen=True)
class TranscriptLine:
    """One line of a conversation, masked, for the inbox's conversation view."""

    message_id: int
    author: str
    text: str
    sent_at: datetime
    intent: str | None
    confidence: float | None


@dataclass(frozen=True)
class InboxCounts:
    """Unreviewed inbox items, in all and by reason (one item may have several)."""

    total: int
    low_confidence: int
    fallback: int
    before_handoff: int


@dataclass(frozen=True)
class _Criteria:
    threshold: float
    fallback_intent: str
    skip_intents: frozenset[str]
    request_intents: frozenset[str]

    def low_confidence(self) -> ColumnElement[Any]:
        return and_(M.confidence.is_not(None), M.confidence < self.threshold)

    def fallback(self) -> ColumnElement[Any]:
        return M.intent == self.fallback_intent

    def flagged(self) -> ColumnElement[Any]:
        """Low confidence or the fallback intent: tests on the line's own columns."""
        return or_(self.low_confidence(), self.fallback())

    def before_handoff(self) -> ColumnElement[Any]:
        """The line is the last one of its conversation before a handoff."""
        # Per handoff, its conversation's last customer line before it was requested
        # (one index range read on ix_messages_interaction_ts each); SQLite builds the
        # list once per statement and then looks lines up by id.
        line = aliased(M)
        last_line = (
            select(line.id)
            .where(
                line.interaction_id == models.Handoff.interaction_id,
                _customer_line(line),
                line.sent_at <= models.Handoff.requested_at,
                ~line.text.startswith("/"),
                _intent_not_in(self.request_intents, line),
            )
            .order_by(line.event_ts.desc(), line.id.desc())
            .limit(1)
            .correlate(models.Handoff)
            .scalar_subquery()
        )
        return M.id.in_(select(last_line).select_from(models.Handoff))

    def waiting(self, reason: ColumnElement[Any]) -> list[ColumnElement[Any]]:
        """The WHERE clauses of an unreviewed inbox line listed for ``reason``."""
        # SQLite tests them in this order: cheap tests first, the per-line index probe
        # for a review last (twice as fast). The two reasons are queried apart: one OR
        # of both probed the handoff list for every line (+33 ms on 200,000 lines).
        return [
            _customer_line(),
            reason,
            M.text != "",
            ~M.text.startswith("/"),
            _intent_not_in(self.skip_intents),
            ~exists().where(models.InboxReview.message_id == M.id),
        ]


def _customer_line(line: Any = M) -> ColumnElement[Any]:
    return and_(line.direction == "inbound", line.author == "customer")


def _intent_not_in(intents: frozenset[str], line: Any = M) -> ColumnElement[Any]:
    if not intents:
        return true()
    # NOT IN is unknown for NULL: a line without an intent is not one of these.
    return or_(line.intent.is_(None), line.intent.not_in(sorted(intents)))


class Inbox:
    """Lists, counts and decides the inbox; one short transaction per call."""

    def __init__(
        self,
        session_factory: sessionmaker,
        masker_factory: Callable[[Session], Masker] | None = None,
    ) -> None:
        """``masker_factory`` makes the masker from a session (default: a
        :class:`MaskerCache` of every contact's name, rebuilt when contacts change)."""
        self._factory = session_factory
        self._masker = masker_factory or MaskerCache()

    def items(
        self,
        limit: int = 200,
        *,
        threshold: float,
        fallback_intent: str = "nlu_fallback",
        skip_intents: frozenset[str] = DEFAULT_SKIP_INTENTS,
        request_intents: frozenset[str] = DEFAULT_REQUEST_INTENTS,
    ) -> list[InboxItem]:
        """Unreviewed customer lines, masked: the ``limit`` most recently recorded,
        newest first (by ``sent_at``).

        ``threshold``: a confidence below it is ``low_confidence``. ``request_intents``:
        asking for a person; never taken as the line that led to a handoff.
        """
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidInput("limit", f"Show between 1 and {MAX_LIMIT} messages.")
        criteria = _criteria(threshold, fallback_intent, skip_intents, request_intents)
        query = _page_query(criteria, limit)
        with unit_of_work(self._factory) as session:
            rows = session.execute(query).all()
            replies = _agent_replies(session, {row.interaction_id for row in rows})
            masker = self._masker(session)
        return [
            InboxItem(
                message_id=row.id,
                interaction_id=row.interaction_id,
                channel=row.channel,
                sent_at=row.sent_at,
                text=masker.mask(row.text),
                intent=row.intent,
                confidence=row.confidence,
                reasons=_reasons(row, criteria),
                agent_replies=tuple(masker.mask(t) for t in replies.get(row.interaction_id, ())),
            )
            for row in rows
        ]

    def counts(
        self,
        *,
        threshold: float,
        fallback_intent: str = "nlu_fallback",
        skip_intents: frozenset[str] = DEFAULT_SKIP_INTENTS,
        request_intents: frozenset[str] = DEFAULT_REQUEST_INTENTS,
    ) -> InboxCounts:
        """How many lines :meth:`items` would list without a limit, in all and by reason
        (same criteria); for a badge."""
        criteria = _criteria(threshold, fallback_intent, skip_intents, request_intents)
        flagged, handed = _count_queries(criteria)
        with unit_of_work(self._factory) as session:
            n_flagged, low, fallback = session.execute(flagged).one()
            handoff, handoff_flagged = session.execute(handed).one()
        total = n_flagged + handoff - handoff_flagged
        return InboxCounts(int(total), int(low), int(fallback), int(handoff))

    def decide(
        self,
        message_ids: Iterable[int],
        decision: str,
        reviewer: str,
        intent: str | None = None,
    ) -> list[ReviewedExample]:
        """Record a trainer's decision on inbox messages, all or none (one transaction).

        ``labelled`` needs ``intent``; the example is the message with stand-ins for its
        personal data (:meth:`Masker.for_training`), stored with the review and returned
        for the caller to write into the training data under ``intent``. ``out_of_scope``
        stores no intent but returns the example too, for the caller to add to the
        project's ``out_of_scope`` intent (this project's domain has one). ``dismissed``
        keeps nothing (``example`` is None). ``intent`` is ignored but for ``labelled``.
        Returned in the order of ``message_ids`` (repeats counted once).

        Raises :class:`InvalidInput` for a bad decision, intent or reviewer,
        :class:`NotFound` for an id that is no customer message, and :class:`Conflict`
        naming the messages already reviewed.
        """
        ids = list(dict.fromkeys(message_ids))
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise InvalidInput("message_ids", "Messages are chosen by their numbers.")
        intent = _checked(decision, reviewer, intent, ids)
        with unit_of_work(self._factory) as session:
            texts = dict(
                session.execute(select(M.id, M.text).where(M.id.in_(ids), _customer_line())).all()
            )
            missing = [i for i in ids if i not in texts]
            if missing:
                raise NotFound(f"No customer {_listed(missing)}.")
            reviewed = sorted(
                session.execute(
                    select(models.InboxReview.message_id).where(
                        models.InboxReview.message_id.in_(ids)
                    )
                ).scalars()
            )
            if reviewed:
                raise Conflict(f"Already reviewed: {_listed(reviewed)}.")
            masker = self._masker(session) if decision != "dismissed" else None
            results = []
            for message_id in ids:
                example = masker.for_training(texts[message_id]) if masker else None
                session.add(
                    models.InboxReview(
                        message_id=message_id,
                        decision=decision,
                        intent=intent,
                        example=example,
                        reviewer=reviewer,
                    )
                )
                results.append(ReviewedExample(message_id, decision, intent, example))
            try:
                session.flush()
            except IntegrityError as error:
                # Another trainer decided on one of them between our check and now.
                raise Conflict(
                    f"Reviewed by someone else meanwhile: one of {_listed(ids)}."
                ) from error
        return results

    def conversation(self, interaction_id: int) -> list[TranscriptLine]:
        """The whole conversation of an inbox item, oldest first, every line masked."""
        with unit_of_work(self._factory) as session:
            if session.get(models.Interaction, interaction_id) is None:
                raise NotFound(f"No conversation {interaction_id}.")
            rows = session.execute(
                select(M.id, M.author, M.text, M.sent_at, M.intent, M.confidence)
                .where(M.interaction_id == interaction_id)
                .order_by(M.event_ts, M.id)
            ).all()
            masker = self._masker(session)
        return [TranscriptLine(row.id, row.author, masker.mask(row.text), *row[3:]) for row in rows]


def _criteria(
    threshold: float,
    fallback_intent: str,
    skip_intents: Iterable[str],
    request_intents: Iterable[str],
) -> _Criteria:
    if not 0.0 <= threshold <= 1.0:
        raise InvalidInput("threshold", "The confidence threshold is between 0 and 1.")
    return _Criteria(
        float(threshold), fallback_intent, frozenset(skip_intents), frozenset(request_intents)
    )


# Statements are built once per criteria: building one costs more than running it.
@functools.lru_cache(maxsize=32)
def _page_query(criteria: _Criteria, limit: int) -> Select:
    # The page's ids first, then their columns (the flag for the reasons computed for
    # those rows only). The page is the most recently *recorded* lines (highest ids, as
    # the log writes them in arrival order): SQLite then walks the table backwards and
    # stops at `limit` (15 ms on 200,000 lines), where the newest by sent_at would sort
    # every waiting line (there is no index on sent_at; 50-100 ms).
    flagged = select(M.id).where(*criteria.waiting(criteria.flagged()))
    handed = select(M.id).where(*criteria.waiting(criteria.before_handoff()))
    both = union(flagged, handed)
    page = both.order_by(both.selected_columns.id.desc()).limit(limit).subquery()
    return (
        select(
            M.id,
            M.interaction_id,
            models.Interaction.channel,
            M.sent_at,
            M.text,
            M.intent,
            M.confidence,
            case((criteria.before_handoff(), True), else_=False).label("before_handoff"),
        )
        .join(page, page.c.id == M.id)
        .join(models.Interaction, models.Interaction.id == M.interaction_id)
        .order_by(M.sent_at.desc(), M.id.desc())
    )


@functools.lru_cache(maxsize=32)
def _count_queries(criteria: _Criteria) -> tuple[Select, Select]:
    def tally(condition: ColumnElement[Any]) -> Any:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    # As for the page: lines flagged by their own columns (a scan), and lines before a
    # handoff (looked up by id) with how many of those are flagged too.
    flagged = select(
        func.count(), tally(criteria.low_confidence()), tally(criteria.fallback())
    ).where(*criteria.waiting(criteria.flagged()))
    handed = select(func.count(), tally(criteria.flagged())).where(
        *criteria.waiting(criteria.before_handoff())
    )
    return flagged, handed


def _reasons(row: Any, criteria: _Criteria) -> tuple[str, ...]:
    # The same tests as the query's, so an item's reasons are why it was listed.
    held = (
        row.confidence is not None and row.confidence < criteria.threshold,
        row.intent == criteria.fallback_intent,
        bool(row.before_handoff),
    )
    return tuple(reason for reason, yes in zip(REASONS, held, strict=True) if yes)


def _agent_replies(session: Session, interaction_ids: set[int]) -> dict[int, list[str]]:
    """The first ``MAX_AGENT_REPLIES`` agent lines of each conversation, oldest first."""
    if not interaction_ids:
        return {}
    position = (
        func.row_number()
        .over(partition_by=M.interaction_id, order_by=(M.event_ts, M.id))
        .label("position")
    )
    ranked = (
        select(M.interaction_id, M.text, M.event_ts, M.id, position)
        .where(M.interaction_id.in_(sorted(interaction_ids)), M.author.startswith("agent:"))
        .subquery()
    )
    rows = session.execute(
        select(ranked.c.interaction_id, ranked.c.text)
        .where(ranked.c.position <= MAX_AGENT_REPLIES)
        .order_by(ranked.c.interaction_id, ranked.c.event_ts, ranked.c.id)
    ).all()
    replies: dict[int, list[str]] = {}
    for interaction_id, text in rows:
        replies.setdefault(interaction_id, []).append(text)
    return replies


def _checked(decision: str, reviewer: str, intent: str | None, ids: Sequence[int]) -> str | None:
    """The intent to store, once the decision's arguments are valid."""
    if decision not in DECISIONS:
        raise InvalidInput("decision", f"The decision is one of {', '.join(DECISIONS)}.")
    if not 1 <= len(ids) <= MAX_LIMIT:
        raise InvalidInput("message_ids", f"Choose between 1 and {MAX_LIMIT} messages.")
    if not (reviewer or "").strip() or len(reviewer) > _MAX_REVIEWER_CHARS:
        raise InvalidInput("reviewer", "Who decided is needed (up to 80 characters).")
    if decision != "labelled":
        return None
    if not intent or not _INTENT_NAME.fullmatch(intent):
        raise InvalidInput("intent", "Choose the intent this message should have been.")
    return intent


def _listed(ids: Sequence[int]) -> str:
    noun = "message" if len(ids) == 1 else "messages"
    return f"{noun} {', '.join(str(i) for i in ids)}"
