"""Train & evaluate: one button runs validate → train → evaluate → golden conversations in
a background process; the candidate is compared with the serving model and promoted only
if the rule allows it (or a trainer overrides it in writing); every promotion can be
rolled back in one click."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sanic import Sanic, response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.workbench.context import Workbench
from bot.workbench.evaluation import EvaluationReport, PromotionDecision, promotion_decision
from bot.workbench.web import back_to, blocking, form_text, render, wb
from crm_bridge.errors import Conflict, InvalidInput

CV_FOLDS = 5


def register(app: Sanic) -> None:
    """Add the training page, its job controls and promotion actions."""
    app.add_route(training_page, "/training", methods=["GET"], name="training")
    app.add_route(training_status, "/training/status.json", methods=["GET"], name="training_status")
    app.add_route(start_training, "/training/start", methods=["POST"], name="training_start")
    app.add_route(promote, "/training/promote", methods=["POST"], name="training_promote")
    app.add_route(rollback, "/training/rollback", methods=["POST"], name="training_rollback")


def candidate_view(workbench: Workbench) -> dict[str, Any]:
    """The last run, its candidate's report, the serving model's, and the decision."""
    status = workbench.jobs.status()
    serving_name = workbench.registry.serving()
    serving = workbench.evaluation_of(serving_name)
    view: dict[str, Any] = {
        "job": status,
        "serving_name": serving_name,
        "serving": serving,
        "candidate": None,
        "decision": None,
        "history": workbench.registry.history(),
        "golden": workbench.golden_names(),
    }
    if status is not None and status.succeeded and status.evaluation_report:
        path = Path(status.evaluation_report)
        if path.exists():
            candidate = EvaluationReport.load(path)
            view["candidate"] = candidate
            view["candidate_name"] = Path(status.candidate_model or "").name
            decision = promotion_decision(candidate, serving, status.golden_failures)
            if view["golden"] and not status.golden_checked:
                # A run whose golden step could not run has not passed it.
                decision = PromotionDecision(
                    False,
                    (*decision.reasons, f"the golden conversations were not run: {status.message}"),
                )
            view["decision"] = decision
            view["is_serving"] = view["candidate_name"] == serving_name
    return view


async def training_page(request: Request) -> HTTPResponse:
    """The job panel, the comparison, the decision, golden conversations and history."""
    view = await blocking(candidate_view, wb(request))
    return render(request, "training.html", **view)


async def training_status(request: Request) -> HTTPResponse:
    """The running job's progress, for the page's script (no customer text in it)."""
    status = await blocking(wb(request).jobs.status)
    if status is None:
        return response.json({"state": "none"})
    data = asdict(status)
    data["done"], data["total"] = status.steps_done, status.steps_total
    data.pop("pid", None)
    return response.json(data)


async def start_training(request: Request) -> HTTPResponse:
    """Start validate → train → evaluate (→ cross-validation when asked) in the background."""
    folds = CV_FOLDS if form_text(request, "cross_validation") == "on" else None
    await blocking(wb(request).jobs.start, folds)
    return back_to("/training", "Training started; this page follows its progress.")


def _promote(workbench: Workbench, actor: str, override_reason: str) -> str:
    view = candidate_view(workbench)
    status, candidate = view["job"], view["candidate"]
    if candidate is None or not status.candidate_model:
        raise Conflict("There is no evaluated candidate to promote; train one first.")
    scores = json.loads(candidate.to_json())
    record = workbench.registry.promote(
        Path(status.candidate_model),
        actor,
        view["decision"],
        scores={"accuracy": scores["accuracy"], "intents": scores["intents"]},
        golden={"checked": status.golden_checked, "failures": list(status.golden_failures)},
        data_commit=workbench.registry.data_commit(workbench.root),
        override_reason=override_reason,
    )
    return f"{record.model} now serves ({record.action})."


async def promote(request: Request) -> HTTPResponse:
    """Promote the candidate if the rule allows it, or with a written override reason."""
    reason = form_text(request, "override_reason").strip()
    notice = await blocking(_promote, wb(request), request.ctx.account.name, reason)
    return back_to("/training", notice)


async def rollback(request: Request) -> HTTPResponse:
    """Serve the previous model again."""
    reason = form_text(request, "reason").strip()
    workbench = wb(request)
    try:
        record = await blocking(workbench.registry.rollback, request.ctx.account.name, reason)
    except InvalidInput as error:
        return back_to("/training", error.message)
    return back_to("/training", f"Rolled back: {record.model} serves again.")
