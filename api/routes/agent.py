"""Agent routes (`/v1/agent/...`): what a support agent sees of a customer, every read audited.

Each read needs the purpose the agent gives for it (`X-Purpose`), and is written to the access
audit (`continuity.audit`) before its answer leaves: no audit entry, no data.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import HeaderParameter, Parameter

from api.application_schemas import AgentApplication, ApplicationDetail, HistoryEntry
from api.auth import Principal, agent_only
from api.schemas import SessionResponse
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
        await runtime.audit.record(request.user.subject_id, customer_id, _what(request), purpose)
        return SessionResponse.of(customer_id, view)

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
            request.user.subject_id, app.subject_id, _what(request), purpose, application_id
        )
        return AgentApplication(
            subject_id=app.subject_id,
            application=ApplicationDetail.of(app),
            history=[HistoryEntry.of(e) for e in envelopes],
        )


def _what(request: Agent) -> str:
    """The route read, by its template: never the raw path."""
    return f"{request.method} {request.scope.get('path_template') or request.url.path}"
