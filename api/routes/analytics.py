"""Non-personal analytics (`/v1/analytics/...`), for agents: counts only, no subject anywhere.

`GET /v1/analytics/daily` gives, per day (UTC) and channel, the customer actions recorded, the
subjects active, carts started and checked out, applications started and submitted, and
conversations opened, handed off, resolved and rated,
counting only subjects who had consented to analytics when they acted
(`continuity.analytics`). The counts follow the log asynchronously: a few moments behind it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.exceptions import ValidationException
from litestar.params import QueryParameter

from aggregates.metadata import Channel
from api.auth import agent_only
from continuity import analytics
from continuity.runtime import Runtime

DEFAULT_DAYS = 30
Since = Annotated[
    date | None,
    QueryParameter(
        name="from", description=f"First day (default: {DEFAULT_DAYS} days before `to`)."
    ),
]
Until = Annotated[date | None, QueryParameter(name="to", description="Last day (default: today).")]
OnChannel = Annotated[Channel | None, QueryParameter(description="Only this channel.")]


class DailyAnalytics(msgspec.Struct):
    since: date
    until: date
    days: list[analytics.DailyCount]


class AnalyticsController(Controller):
    path = "/v1/analytics"
    guards = [agent_only]
    tags = ["analytics"]

    @get(
        "/daily",
        summary="Actions, active subjects, carts, applications and conversations per day and"
        " channel (non-personal)",
    )
    async def daily(
        self,
        runtime: NamedDependency[Runtime],
        since: Since = None,
        until: Until = None,
        channel: OnChannel = None,
    ) -> DailyAnalytics:
        last = until or datetime.now(UTC).date()
        first = since or last - timedelta(days=DEFAULT_DAYS)
        if first > last:
            raise _bad_range("from", "must not be after to")
        if (last - first).days >= analytics.MAX_DAYS:
            raise _bad_range("from", f"at most {analytics.MAX_DAYS} days at once")
        counts = await analytics.daily(runtime.pool, first, last, channel)
        return DailyAnalytics(first, last, counts)


def _bad_range(field: str, message: str) -> ValidationException:
    return ValidationException(
        f"{field} {message}", extra=[{"key": field, "source": "query", "message": message}]
    )
