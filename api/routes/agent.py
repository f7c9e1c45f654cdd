"""Agent routes (`/v1/agent/...`): what a support agent sees of a customer, every read audited.

Each read needs the purpose the agent gives for it (`X-Purpose`), and is written to the access
audit (`continuity.audit`) before its answer leaves: no audit entry, no data.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import HeaderParameter, Parameter, QueryParameter

from api.application_schemas import AgentApplication, ApplicationDetail, HistoryEntry
from api.auth import Principal, agent_only
from api.schemas import SessionResponse
from continuity.application_queue import MAX_PAGE, Order, QueueFilter, page
from continuity.audit import MAX_PURPOSE
from continuity.runtime import Runtime

Agent = Request[Principal, Any, Any]
Purpose = Annotated[
    str,
    HeaderParameter(
        name="X-Purpose",
        min_length=3,
        max_length=MAX_PURPOSE,
        description='Why the agent reads this customer\'s data ("ticket 4711: loan question"):'
        " recorded, sealed, in the access audit.",
    ),
]
CustomerId = Annotated[UUID, Parameter(description="The customer's subject id.")]
ApplicationId = Annotated[UUID, Parameter(description="The application's id.")]


QueueStatus = Literal["in_progress", "submitted", "withdrawn", "expired"]
MAX_IDLE_HOURS = 24 * 3650


class QueueItem(msgspec.Struct):
    application_id: UUID
    subject_id: UUID
    form_type: str
    form_version: int
    status: str
    current_step: str | None
    channel: str
    started_at: datetime
    last_activity: datetime
    version: int


class QueuePageResponse(msgspec.Struct):
    """A page of the work queue; `next_cursor` fetches the next (null: this is the last)."""

    items: list[QueueItem]
    next_cursor: str | None


class AgentController(Controller):
    path = "/v1/agent"
    guards = [agent_only]
    tags = ["agent"]

    @get(
        "/customers/{customer_id:uuid}/session",
        summary="A customer's resume view, as their devices see it (audited)",
    )
    async def customer_session(
        self,
        request: Agent,
        runtime: NamedDependency[Runtime],
        customer_id: CustomerId,
        purpose: Purpose,
    ) -> SessionResponse:
        view = await runtime.carts.session(customer_id)
        await runtime.audit.record(
            request.user.subject_id, customer_id, audited_what(request), purpose
        )
        return SessionResponse.of(customer_id, view, await runtime.devices.names(customer_id))

    @get("/applications", summary="The work queue of applications, by last activity")
    async def queue(
        self,
        runtime: NamedDependency[Runtime],
        status: Annotated[
            QueueStatus | None, QueryParameter(description="Only this status.")
        ] = None,
        form_type: Annotated[str | None, QueryParameter(max_length=63)] = None,
        current_step: Annotated[str | None, QueryParameter(max_length=63)] = None,
        channel: Annotated[str | None, QueryParameter(max_length=16)] = None,
        idle_hours: Annotated[
            int | None,
            QueryParameter(
                ge=0, le=MAX_IDLE_HOURS, description="Untouched for at least this long."
            ),
        ] = None,
        order: Annotated[
            Order, QueryParameter(description="recent (default) or oldest activity first.")
        ] = "recent",
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 20,
        cursor: Annotated[
            str | None, QueryParameter(max_length=200, description="The last page's next_cursor.")
        ] = None,
    ) -> QueuePageResponse:
        """Served by an asynchronous projection: a change shows here once the projection's
        runner has applied it (usually within a second). It holds no personal data (ids,
        form, step, status, channel, times), so reading it needs no purpose and is not audited;
        opening an application is."""
        idle_since = None if idle_hours is None else datetime.now(UTC) - timedelta(hours=idle_hours)
        where = QueueFilter(
            status=status,
            form_type=form_type,
            current_step=current_step,
            channel=channel,
            idle_since=idle_since,
        )
        found = await page(runtime.pool, where, limit=limit, order=order, cursor=cursor)
        items = [QueueItem(**msgspec.structs.asdict(row)) for row in found.rows]
        return QueuePageResponse(items, found.next_cursor)

    @get(
        "/applications/{application_id:uuid}",
        summary="An application with its answers and full history (audited)",
    )
    async def application(
        self,
        request: Agent,
        runtime: NamedDependency[Runtime],
        application_id: ApplicationId,
        purpose: Purpose,
    ) -> AgentApplication:
        app, envelopes = await runtime.applications.with_history(application_id)
        await runtime.audit.record(
            request.user.subject_id, app.subject_id, audited_what(request), purpose, application_id
        )
        return AgentApplication(
            subject_id=app.subject_id,
            application=ApplicationDetail.of(app),
            history=[HistoryEntry.of(e) for e in envelopes],
        )


def audited_what(request: Agent) -> str:
    """The route read, by its template: never the raw path."""
    return f"{request.method} {request.scope.get('path_template') or request.url.path}"
