"""Intents: every intent with its examples and last F1; edits go back to data/ as YAML.

Each form carries the intent's version token; a save against a version someone else
has changed meanwhile is refused and the page comes back with the trainer's unsaved
text still in the form, so no edit is lost.
"""

from __future__ import annotations

from typing import Any

from sanic import Sanic
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.workbench.web import back_to, blocking, error_text, form_text, render, wb
from crm_bridge.errors import Conflict, InvalidInput, NotFound, http_status

INTENT_PATH = "/intents/<name:path>"


def register(app: Sanic) -> None:
    """Add the intent list, the intent page and the edit actions."""
    app.add_route(intent_list, "/intents", methods=["GET"], name="intent_list")
    app.add_route(create_intent, "/intents", methods=["POST"], name="create_intent")
    app.add_route(intent_page, INTENT_PATH, methods=["GET"], name="intent_page")
    app.add_route(edit_intent, INTENT_PATH, methods=["POST"], name="edit_intent")


def _latest_f1(request: Request) -> dict[str, float]:
    """Each intent's F1 from the latest evaluation (of the serving model, else the newest)."""
    report = wb(request).latest_evaluation()
    if report is None:
        return {}
    return {name: metrics.f1 for name, metrics in report.evaluated_intents().items()}


async def intent_list(request: Request) -> HTTPResponse:
    """Every intent: examples, flags and F1; the form that creates one."""
    workbench = wb(request)
    intents = await blocking(workbench.training_data.intents)
    files = await blocking(workbench.training_data.files)
    f1 = await blocking(_latest_f1, request)
    return render(request, "intents.html", intents=intents, files=files, f1=f1)


async def create_intent(request: Request) -> HTTPResponse:
    """A new intent in the chosen file, with its first examples and response."""
    data = wb(request).training_data
    name = form_text(request, "name").strip()
    examples = [
        line.strip() for line in form_text(request, "examples").splitlines() if line.strip()
    ]
    response = form_text(request, "response").strip() or None
    try:
        await blocking(data.create_intent, name, form_text(request, "file"), examples, response)
    except (InvalidInput, Conflict) as error:
        intents = await blocking(data.intents)
        files = await blocking(data.files)
        return render(
            request,
            "intents.html",
            status=http_status(error),
            intents=intents,
            files=files,
            f1={},
            error=error_text(error),
            draft={"name": name, "examples": "\n".join(examples), "response": response or ""},
        )
    return back_to(f"/intents/{name}", f"Created intent {name}.")


async def intent_page(request: Request, name: str) -> HTTPResponse:
    """One intent: its examples with flags and entity marks, and every edit form."""
    data = wb(request).training_data
    intent = await blocking(data.intent, name)
    others = [other.name for other in await blocking(data.intents) if other.name != name]
    f1 = (await blocking(_latest_f1, request)).get(name)
    return render(request, "intent.html", intent=intent, others=others, f1=f1)


# The edit form's ``action`` field picks one of these.
EDITS = ("add", "edit", "delete", "move", "rename", "delete_intent")


async def edit_intent(request: Request, name: str) -> HTTPResponse:
    """Apply one edit (add, edit, delete or move an example; rename or delete the intent)."""
    data = wb(request).training_data
    action = form_text(request, "action")
    version = form_text(request, "version")
    text = form_text(request, "text").strip()
    try:
        index = int(form_text(request, "index") or "-1")
        notice, target = await blocking(_apply, data, action, name, version, index, text, request)
    except ValueError:
        raise InvalidInput("index", "That example does not exist.") from None
    except (InvalidInput, Conflict) as error:
        try:
            intent = await blocking(data.intent, name)
        except NotFound:
            raise error from None
        others = [o.name for o in await blocking(data.intents) if o.name != name]
        return render(
            request,
            "intent.html",
            status=http_status(error),
            intent=intent,
            others=others,
            f1=None,
            error=error_text(error),
            draft={"action": action, "index": index, "text": text},
        )
    return back_to(target, notice)


def _apply(
    data: Any, action: str, name: str, version: str, index: int, text: str, request: Request
) -> tuple[str, str]:
    """Run one edit; the notice to show and the page to go back to."""
    page = f"/intents/{name}"
    if action == "add":
        data.add_example(name, text, version)
        return "Example added.", page
    if action == "edit":
        data.edit_example(name, index, text, version)
        return "Example saved.", page
    if action == "delete":
        data.delete_example(name, index, version)
        return "Example deleted.", page
    if action == "move":
        target = form_text(request, "to_intent")
        data.move_example(name, index, target, version)
        return f"Example moved to {target}.", page
    if action == "rename":
        data.rename_intent(name, text, version)
        return f"Renamed {name} to {text}.", f"/intents/{text}"
    if action == "delete_intent":
        data.delete_intent(name, version)
        return f"Deleted intent {name}.", "/intents"
    raise InvalidInput("action", "Unknown edit.")
