"""Timeline routes: one chronological, cross-channel list of what a customer did and what was
done for them (cart, applications, conversations), newest first, a page at a time.

An agent reads a customer's at `/v1/agent/customers/{id}/timeline` (a purpose required, the
read audited before the answer leaves, as every agent read of a customer); a customer reads
their own at `/v1/me/timeline`. Both are served by an asynchronous projection
(`continuity.timeline`): a change appears once its runner has applied it, usually well within a
second of the append.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.exceptions import ValidationException
from litestar.params import QueryParameter

from aggregates.metadata import Channel
from api.auth import agent_only, customer_only
from api.customer_requests import IfNoneMatch, Me
from api.etags import check_not_modified, content_etag
from api.routes.agent import Agent, CustomerId, Purpose
from continuity.runtime import Runtime
from continuity.timeline import (
    CURSOR_PATTERN,
    MAX_PAGE,
    MAX_SUMMARY_TEXT,
    KindFilter,
    Order,
    Summary,
    TimelineEntry,
    TimelineFilter,
    TimelinePage,
)

MAX_FILTER_VALUES = 20

Channels = Annotated[
    list[Channel] | None,
    QueryParameter(
        max_items=MAX_FILTER_VALUES,
        description="Only entries on these channels; repeat for several"
        " (`channel=web&channel=email`).",
    ),
]
Kinds = Annotated[
    list[KindFilter] | None,
    QueryParameter(
        max_items=MAX_FILTER_VALUES,
        description="Only these kinds; a stream (`cart`, `application`, `conversation`) stands"
        " for all of its kinds. Repeat for several (`kind=conversation&kind=cart.checked_out`).",
    ),
]
Ordering = Annotated[
    Order, QueryParameter(description="newest (default) or oldest first, in log order.")
]
Limit = Annotated[int, QueryParameter(ge=1, le=MAX_PAGE, description="Entries per page.")]
Cursor = Annotated[
    str | None,
    QueryParameter(
        max_length=13, pattern=CURSOR_PATTERN, description="The last page's next_cursor."
    ),
]


class TimelineItem(msgspec.Struct):
    """One thing that happened: where (channel, device), who (actor), what (kind, summary)."""

    position: int
    """Its place in the log: the order of the timeline."""
    at: datetime
    kind: str
    channel: str
    stream: str
    """cart, application or conversation."""
    stream_id: UUID
    version: int
    """The stream's version after it."""
    device: str | None
    actor_type: str
    actor_id: str | None
    summary: Summary
    """The fields that apply to the kind. A turn's text is cut at MAX_SUMMARY_TEXT characters
    (then `text_truncated` is true); an application's answers are not here, only the names of
    the fields saved."""

    @classmethod
    def of(cls, entry: TimelineEntry) -> TimelineItem:
        return cls(
            position=entry.position,
            at=entry.occurred_at,
            kind=entry.kind,
            channel=entry.channel,
            stream=entry.stream,
            stream_id=entry.stream_id,
            version=entry.version,
            device=entry.device,
            actor_type=entry.actor_type,
            actor_id=entry.actor_id,
            summary=entry.summary,
        )


class TimelineResponse(msgspec.Struct):
    """A page of the timeline; `next_cursor` fetches the next (null: this is the last)."""

    items: list[TimelineItem]
    next_cursor: str | None


async def _page(
    runtime: Runtime,
    subject_id: UUID,
    channel: list[Channel] | None,
    kind: list[KindFilter] | None,
    order: Order,
    limit: int,
    cursor: str | None,
) -> TimelinePage:
    where = TimelineFilter(channels=frozenset(channel or ()), kinds=frozenset(kind or ()))
    return await runtime.timeline.page(
        runtime.pool, subject_id, where, limit=limit, order=order, cursor=cursor
    )


_QUERY = frozenset({"channel", "kind", "order", "limit", "cursor"})


def only_known_query(request: Request[Any, Any, Any]) -> None:
    """Refuse a query parameter the routes do not take (a misspelt filter would otherwise
    silently widen the answer)."""
    for name in request.query_params:
        if name not in _QUERY:
            message = f"unknown query parameter; these routes take {', '.join(sorted(_QUERY))}"
            raise ValidationException(
                f"{name[:40]!r}: {message}",
                extra=[{"key": name[:40], "source": "query", "message": message}],
            )


def _answer(found: TimelinePage) -> TimelineResponse:
    return TimelineResponse([TimelineItem.of(e) for e in found.entries], found.next_cursor)


_SERVED = (
    "Served by an asynchronous projection: a change appears once its runner has applied it"
    f" (usually well within a second). A turn's text is cut at {MAX_SUMMARY_TEXT} characters."
)


class AgentTimelineController(Controller):
    path = "/v1/agent/customers"
    guards = [agent_only]
    tags = ["agent"]

    @get(
        "/{customer_id:uuid}/timeline",
        summary="A customer's timeline across channels, newest first (audited)",
        description=_SERVED,
        before_request=only_known_query,
    )
    async def customer_timeline(
        self,
        request: Agent,
        runtime: NamedDependency[Runtime],
        customer_id: CustomerId,
        purpose: Purpose,
        channel: Channels = None,
        kind: Kinds = None,
        order: Ordering = "newest",
        limit: Limit = 20,
        cursor: Cursor = None,
    ) -> TimelineResponse:
        found = await _page(runtime, customer_id, channel, kind, order, limit, cursor)
        what = f"{request.method} {request.scope.get('path_template') or request.url.path}"
        await runtime.audit.record(request.user.subject_id, customer_id, what, purpose)
        return _answer(found)


class MyTimelineController(Controller):
    path = "/v1/me/timeline"
    guards = [customer_only]
    tags = ["timeline"]

    @get(
        "",
        summary="The customer's own timeline across channels, newest first",
        description=_SERVED,
        before_request=only_known_query,
    )
    async def my_timeline(
        self,
        request: Me,
        runtime: NamedDependency[Runtime],
        channel: Channels = None,
        kind: Kinds = None,
        order: Ordering = "newest",
        limit: Limit = 20,
        cursor: Cursor = None,
        if_none_match: IfNoneMatch = None,
    ) -> Response[TimelineResponse]:
        found = await _page(runtime, request.user.subject_id, channel, kind, order, limit, cursor)
        body = _answer(found)
        etag = content_etag(body)
        check_not_modified(if_none_match, etag)
        return Response(body, headers={"ETag": etag})
