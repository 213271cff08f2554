"""Insights: is the bot helping? KPIs and charts from the CRM, each downloadable as CSV."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from typing import Any

from sanic import Sanic, response
from sanic.request import Request
from sanic.response import HTTPResponse
from sqlalchemy import select

from bot.workbench import charts
from bot.workbench.web import blocking, render, wb
from crm_bridge import insights as crm_insights
from crm_bridge import models, outbox_admin
from crm_bridge.db import unit_of_work
from crm_bridge.errors import InvalidInput

DEFAULT_DAYS = 30
MAX_DAYS = 366
TOP_GROUPS = 5


def register(app: Sanic) -> None:
    """Add the Insights page and its CSV downloads."""
    app.add_route(insights_page, "/insights", methods=["GET"], name="insights")
    app.add_route(insights_csv, "/insights/<filename:str>", methods=["GET"], name="insights_csv")


def query_from(request: Request) -> crm_insights.InsightsQuery:
    """The date range and channel of the request (default: the last 30 days, all channels)."""
    today = datetime.now(timezone.utc).date()
    try:
        end = date.fromisoformat(request.args.get("end") or today.isoformat())
        start = date.fromisoformat(
            request.args.get("start") or (end - timedelta(days=DEFAULT_DAYS - 1)).isoformat()
        )
    except ValueError as error:
        raise InvalidInput("start", "Dates are written YYYY-MM-DD.") from error
    if end < start:
        raise InvalidInput("end", "The range ends before it starts.")
    if (end - start).days >= MAX_DAYS:
        raise InvalidInput("start", f"Choose a range of at most {MAX_DAYS} days.")
    channel = (request.args.get("channel") or "").strip()[:50] or None
    return crm_insights.InsightsQuery(start=start, end=end, channel=channel)


def _channels(factory: Any) -> list[str]:
    with unit_of_work(factory) as session:
        rows = session.execute(
            select(models.Interaction.channel)
            .where(models.Interaction.channel.is_not(None))
            .distinct()
        ).scalars()
        return sorted(str(channel) for channel in rows)


def _report(factory: Any, query: crm_insights.InsightsQuery) -> crm_insights.InsightsReport:
    return crm_insights.insights(factory, query)


async def insights_page(request: Request) -> HTTPResponse:
    """KPI tiles, charts with their numbers, and the misunderstood groups."""
    workbench = wb(request)
    query = query_from(request)
    # Independent reads, side by side (SQLite and the encoder release the GIL).
    report, channels, groups, outbox = await asyncio.gather(
        blocking(_report, workbench.crm, query),
        blocking(_channels, workbench.crm),
        blocking(workbench.inbox_groups),
        blocking(outbox_admin.status, workbench.crm),
    )
    groups = groups[:TOP_GROUPS]
    per_day: Counter[date] = Counter()
    per_channel: Counter[str] = Counter()
    for row in report.conversations:
        per_day[row.day] += row.conversations
        if row.channel:
            per_channel[row.channel] += row.conversations
    outcomes = report.outcomes
    figures = {
        "conversations": charts.bar_chart(
            "Conversations per day",
            [(day.strftime("%d %b"), float(per_day[day])) for day in sorted(per_day)],
        ),
        "channels": charts.bar_chart(
            "Conversations per channel",
            [(name, float(n)) for name, n in per_channel.most_common()],
            horizontal=True,
        ),
        "outcomes": charts.bar_chart(
            "Outcome per conversation",
            [
                ("resolved by bot", float(outcomes.resolved_by_bot)),
                ("ticket", float(outcomes.ticket_created)),
                ("handed off", float(outcomes.handed_off)),
                ("abandoned", float(outcomes.abandoned)),
                ("still open", float(outcomes.open)),
            ],
            horizontal=True,
        ),
        "csat": charts.bar_chart(
            "Customer satisfaction (1-5)",
            [(str(score), float(report.csat.distribution[score])) for score in (1, 2, 3, 4, 5)],
        ),
        "top_intents": charts.bar_chart(
            "Top intents (customer messages)",
            [(row.intent, float(row.messages)) for row in report.top_intents],
            horizontal=True,
        ),
    }
    return render(
        request,
        "insights.html",
        report=report,
        query=query,
        channels=channels,
        figures=figures,
        csv_query=_csv_query(query),
        groups=groups,
        outbox=outbox,
    )


def _csv_query(query: crm_insights.InsightsQuery) -> str:
    parts = f"start={query.start.isoformat()}&end={query.end.isoformat()}"
    return parts + (f"&channel={query.channel}" if query.channel else "")


async def insights_csv(request: Request, filename: str) -> HTTPResponse:
    """One chart's numbers as CSV (``/insights/<chart>.csv``: what the page shows)."""
    chart = filename.removesuffix(".csv")
    if not filename.endswith(".csv") or chart not in crm_insights.CHARTS:
        raise InvalidInput("chart", f"No chart called {chart}.")
    report = await blocking(_report, wb(request).crm, query_from(request))
    query = report.query
    filename = f"rapport-{chart}-{query.start.isoformat()}-{query.end.isoformat()}.csv"
    return response.text(
        report.csv(chart),
        content_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
