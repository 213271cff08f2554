"""Inbox: customer messages the bot was unsure about, grouped, masked, labelled in bulk.

Labelling a group records the decision in the CRM and adds each message, with its
personal data replaced by surrogates (``Masker.for_training``), as a training example
of the chosen intent; "out of scope" adds them to the ``out_of_scope`` intent.
"""

from __future__ import annotations

import asyncio

from sanic import Sanic
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.workbench.context import Workbench
from bot.workbench.web import back_to, blocking, form_text, render, wb
from crm_bridge.conversations import recent_conversations
from crm_bridge.errors import InvalidInput

OUT_OF_SCOPE_INTENT = "out_of_scope"
DECISIONS = {"label": "labelled", "out_of_scope": "out_of_scope", "dismiss": "dismissed"}


def register(app: Sanic) -> None:
    """Add the inbox, its decision form and the conversation view."""
    app.add_route(inbox_page, "/inbox", methods=["GET"], name="inbox")
    app.add_route(decide, "/inbox", methods=["POST"], name="inbox_decide")
    app.add_route(conversation_list, "/conversations", methods=["GET"], name="conversations")
    app.add_route(
        conversation_page,
        "/conversations/<interaction_id:int>",
        methods=["GET"],
        name="conversation",
    )


async def inbox_page(request: Request) -> HTTPResponse:
    """Groups of similar messages, each with its reasons, intent guesses and actions."""
    workbench = wb(request)
    groups, counts, all_intents = await asyncio.gather(
        blocking(workbench.inbox_groups),
        blocking(workbench.inbox.counts, threshold=workbench.fallback_threshold()),
        blocking(workbench.training_data.intents),
    )
    intents = [intent.name for intent in all_intents]
    return render(request, "inbox.html", groups=groups, counts=counts, intents=intents)


def _label(workbench: Workbench, ids: list[int], decision: str, intent: str, reviewer: str) -> str:
    """Record the decision and add the masked examples; the notice for the trainer."""
    data = workbench.training_data
    if decision == "labelled":
        data.intent(intent)  # an unknown intent is refused before anything is recorded
    reviewed = workbench.inbox.decide(ids, decision, reviewer, intent=intent or None)
    if decision == "dismissed":
        return f"Dismissed {len(reviewed)} message(s)."
    target = intent if decision == "labelled" else OUT_OF_SCOPE_INTENT
    added = 0
    for item in reviewed:
        if not item.example:
            continue
        current = data.intent(target)
        if any(example.text == item.example for example in current.examples):
            continue  # several customers wrote the same words: one example is enough
        try:
            data.add_example(target, item.example, current.version)
            added += 1
        except InvalidInput:
            continue  # a duplicate under other spacing or case
    return f"Added {added} example(s) to {target}; retrain to use them."


async def decide(request: Request) -> HTTPResponse:
    """Label the ticked messages with an intent, mark them out of scope, or dismiss them."""
    workbench = wb(request)
    decision = DECISIONS.get(form_text(request, "decision"))
    if decision is None:
        raise InvalidInput("decision", "Choose label, out of scope or dismiss.")
    try:
        ids = sorted({int(value) for value in request.form.getlist("message_id") or []})
    except ValueError:
        raise InvalidInput("message_id", "Tick the messages to decide on.") from None
    if not ids:
        raise InvalidInput("message_id", "Tick at least one message.")
    intent = form_text(request, "intent").strip()
    if decision == "labelled" and not intent:
        raise InvalidInput("intent", "Choose the intent these messages mean.")
    notice = await blocking(_label, workbench, ids, decision, intent, request.ctx.account.name)
    return back_to("/inbox", notice)


async def conversation_list(request: Request) -> HTTPResponse:
    """The newest conversations, 50 a page; each opens its (masked) transcript."""
    try:
        before = int(request.args.get("before", "")) if request.args.get("before") else None
    except ValueError:
        raise InvalidInput("before", "That page does not exist.") from None
    rows = await blocking(recent_conversations, wb(request).crm, before)
    return render(request, "conversations.html", rows=rows)


async def conversation_page(request: Request, interaction_id: int) -> HTTPResponse:
    """One conversation, masked, with the button that saves it as a golden test."""
    lines = await blocking(wb(request).inbox.conversation, interaction_id)
    return render(request, "conversation.html", lines=lines, interaction_id=interaction_id)
