"""The analytics page (`/console/analytics`): channel mix over time, each form's funnel, journeys
between channels, and how conversations end by channel, drawn from the same non-personal
counts as `/v1/analytics/...`, each with its numbers in a table, and each table day by day as
a CSV file."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from litestar.response import Template

from api.auth import agent_only
from api.console.charts import Bar, bars, stacked_days
from api.console.cookies import CONSOLE
from continuity import analytics, analytics_journeys
from continuity.runtime import Runtime

Days = Annotated[Literal[7, 30, 90], QueryParameter(description="The last 7, 30 or 90 days.")]
TableName = Literal["daily", "journeys", "funnels", "conversations"]


def _period(days: int) -> tuple[date, date]:
    last = datetime.now(UTC).date()
    return last - timedelta(days=days - 1), last


def _rate(part: int, whole: int) -> str:
    return f"{part / whole:.0%}" if whole else "—"


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


async def _rows(runtime: Runtime, table: TableName, first: date, last: date) -> list[Any]:
    """The table's rows, day by day."""
    if table == "daily":
        return await analytics.daily(runtime.pool, first, last)
    return await analytics_journeys.by_day(runtime.pool, table, first, last)


def _stages(funnel: analytics_journeys.Funnel) -> list[dict[str, Any]]:
    """Each stage with how many it lost since the stage before, as a share of those."""
    stages, before = [], None
    for stage in funnel.stages:
        dropped = "" if before is None else _rate(before - stage.reached, before)
        stages.append({"stage": stage.stage, "reached": stage.reached, "dropped": dropped})
        before = stage.reached
    return stages


def _csv(rows: Sequence[Any]) -> bytes:
    builtins = [msgspec.to_builtins(row) for row in rows]
    out = io.StringIO()
    if builtins:
        writer = csv.DictWriter(out, fieldnames=list(builtins[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(builtins)
    return out.getvalue().encode()


class AnalyticsPages(Controller):
    path = f"{CONSOLE}/analytics"
    guards = [agent_only]
    include_in_schema = False

    @get("")
    async def page(self, runtime: NamedDependency[Runtime], days: Days = 30) -> Template:
        first, last = _period(days)
        daily = await analytics.daily(runtime.pool, first, last)
        pairs = await analytics_journeys.pairs(runtime.pool, first, last)
        funnels = await analytics_journeys.funnels(runtime.pool, first, last)
        endings = await analytics_journeys.endings(runtime.pool, first, last)
        dates = [first + timedelta(days=n) for n in range((last - first).days + 1)]
        mix: dict[str, dict[date, int]] = {}
        for row in daily:
            if row.actions:
                mix.setdefault(row.channel, {})[row.day] = row.actions
        channels = [
            {
                "channel": e.channel,
                "opened": e.opened,
                "resolved": e.resolved,
                "containment": _rate(e.contained, e.resolved),
                "handoff_rate": _rate(e.handed_off, e.opened),
                "resolution": _minutes(e.resolution_seconds),
                "first_reply": _minutes(e.first_reply_seconds),
                "satisfaction": f"{e.rating_sum / e.ratings:.1f} / 5" if e.ratings else "—",
            }
            for e in endings
        ]
        context = {
            "page": "analytics",
            "days": days,
            "since": first,
            "until": last,
            "mix_chart": stacked_days(
                "mix",
                "Customer actions per day, by channel",
                f"Stacked columns from {first} to {last}, one colour per channel.",
                dates,
                {name: mix[name] for name in sorted(mix)},
            ),
            "mix": sorted(
                ((name, sum(values.values())) for name, values in mix.items()),
                key=lambda pair: -pair[1],
            ),
            "funnels": [
                {
                    "form_type": f.form_type,
                    "stages": _stages(f),
                    "chart": bars(
                        f"funnel-{f.form_type}",
                        f"The {f.form_type} funnel",
                        "Applications that reached each stage: started, each step, submitted.",
                        [Bar(s.stage, s.reached, str(s.reached)) for s in f.stages],
                    ),
                }
                for f in funnels
            ],
            "pairs": pairs,
            "pairs_chart": bars(
                "journeys",
                "Journeys continued on another channel",
                "Carts, applications and conversations started on one channel and continued"
                " on another, by pair.",
                [
                    Bar(f"{p.from_channel} → {p.to_channel}", p.journeys, str(p.journeys))
                    for p in pairs
                ],
            ),
            "channels": channels,
            "resolution_chart": bars(
                "resolution",
                "Mean time to resolve a conversation, by the channel it started on",
                "From opening to resolution.",
                [
                    Bar(e.channel, e.resolution_seconds or 0, _minutes(e.resolution_seconds))
                    for e in endings
                ],
            ),
        }
        return Template("analytics.html", context=context)

    @get("/csv/{table:str}")
    async def download(
        self, runtime: NamedDependency[Runtime], table: FromPath[TableName], days: Days = 30
    ) -> Response[bytes]:
        first, last = _period(days)
        name = f"analytics-{table}-{first}-{last}.csv"
        return Response(
            _csv(await _rows(runtime, table, first, last)),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
