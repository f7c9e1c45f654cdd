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
from continuity import analytics, analytics_journeys
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


class JourneyAnalytics(msgspec.Struct):
    since: date
    until: date
    pairs: list[analytics_journeys.ChannelPair]
    """Most frequent first."""


class FunnelAnalytics(msgspec.Struct):
    since: date
    until: date
    forms: list[analytics_journeys.Funnel]


class ConversationAnalytics(msgspec.Struct):
    since: date
    until: date
    channels: list[analytics_journeys.Endings]


def _period(since: date | None, until: date | None) -> tuple[date, date]:
    last = until or datetime.now(UTC).date()
    first = since or last - timedelta(days=DEFAULT_DAYS)
    if first > last:
        raise _bad_range("from", "must not be after to")
    if (last - first).days >= analytics.MAX_DAYS:
        raise _bad_range("from", f"at most {analytics.MAX_DAYS} days at once")
    return first, last


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
        first, last = _period(since, until)
        counts = await analytics.daily(runtime.pool, first, last, channel)
        return DailyAnalytics(first, last, counts)

    @get(
        "/journeys",
        summary="Journeys started on one channel and continued on another, by channel pair",
    )
    async def journeys(
        self, runtime: NamedDependency[Runtime], since: Since = None, until: Until = None
    ) -> JourneyAnalytics:
        """A cart, application or conversation the customer continued on another channel than
        the one they started it on: each new channel once per journey."""
        first, last = _period(since, until)
        return JourneyAnalytics(
            first, last, await analytics_journeys.pairs(runtime.pool, first, last)
        )

    @get("/funnels", summary="Each application form's funnel: started, each step, submitted")
    async def funnels(
        self, runtime: NamedDependency[Runtime], since: Since = None, until: Until = None
    ) -> FunnelAnalytics:
        """Applications that reached each stage in the period (a step counts once per
        application): the drop-off at a step is the difference from the stage before."""
        first, last = _period(since, until)
        return FunnelAnalytics(
            first, last, await analytics_journeys.funnels(runtime.pool, first, last)
        )

    @get(
        "/conversations",
        summary="How conversations ended, by the channel they started on: resolution, bot"
        " containment, time to resolve and to the first agent reply",
    )
    async def conversations(
        self, runtime: NamedDependency[Runtime], since: Since = None, until: Until = None
    ) -> ConversationAnalytics:
        """Each conversation counts on the channel the customer started it on: the handoff
        rate is `handed_off / opened`, bot containment `contained / resolved`, satisfaction
        `rating_sum / ratings`."""
        first, last = _period(since, until)
        return ConversationAnalytics(
            first, last, await analytics_journeys.endings(runtime.pool, first, last)
        )


def _bad_range(field: str, message: str) -> ValidationException:
    return ValidationException(
        f"{field} {message}", extra=[{"key": field, "source": "query", "message": message}]
    )
