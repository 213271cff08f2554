"""Golden conversations: any CRM conversation saved (and edited) as a Rasa test story
that every candidate model must replay before it may serve."""

from __future__ import annotations

import asyncio

from sanic import Sanic
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.workbench import golden
from bot.workbench.context import Workbench
from bot.workbench.web import back_to, blocking, error_text, form_text, render, wb
from crm_bridge.errors import Conflict, InvalidInput, http_status


def register(app: Sanic) -> None:
    """Add the golden conversation editor and its save and delete actions."""
    app.add_route(new_golden, "/golden/new", methods=["GET"], name="golden_new")
    app.add_route(save_golden, "/golden", methods=["POST"], name="golden_save")
    app.add_route(
        delete_golden, "/golden/<name:str>/delete", methods=["POST"], name="golden_delete"
    )


def _story_of(workbench: Workbench, interaction_id: int) -> str:
    """The conversation as a masked test story (blocking: Rasa's tracker store)."""
    story: str = asyncio.run(
        golden.story_from_conversation(interaction_id, workbench.crm, workbench.tracker_store())
    )
    return story


async def new_golden(request: Request) -> HTTPResponse:
    """The conversation as a test story in an editable form."""
    try:
        interaction_id = int(request.args.get("interaction", ""))
    except ValueError:
        raise InvalidInput("interaction", "Open a conversation first, then save it.") from None
    story = await blocking(_story_of, wb(request), interaction_id)
    return render(
        request,
        "golden.html",
        name=f"conversation-{interaction_id}",
        story=story,
        interaction_id=interaction_id,
    )


async def save_golden(request: Request) -> HTTPResponse:
    """Validate and store the story; a bad one comes back with the reason and the text."""
    workbench = wb(request)
    name = form_text(request, "name").strip()
    story = form_text(request, "story")
    try:
        await blocking(golden.save_golden, workbench.golden_dir, name, story)
    except (InvalidInput, Conflict) as error:
        return render(
            request,
            "golden.html",
            status=http_status(error),
            name=name,
            story=story,
            interaction_id=form_text(request, "interaction_id"),
            error=error_text(error),
        )
    return back_to("/training", f"Saved golden conversation {name}; every candidate replays it.")


async def delete_golden(request: Request, name: str) -> HTTPResponse:
    """Remove a golden conversation."""
    await blocking(golden.delete_golden, wb(request).golden_dir, name)
    return back_to("/training", f"Deleted golden conversation {name}.")
