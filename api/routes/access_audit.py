"""The access audit for compliance officers (`GET /v1/privacy/audit`): which agent read which
subject's data, when and why (the purposes opened), filterable by agent, subject and time, a
page at a time, newest first unless asked otherwise (as the timeline)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.exceptions import ValidationException
from litestar.params import QueryParameter

from api.auth import compliance_only
from continuity.audit import MAX_PAGE, AuditEntry, AuditFilter, Order
from continuity.runtime import Runtime

_QUERY = frozenset({"agent_id", "subject_id", "since", "until", "order", "limit", "cursor"})


class AuditItem(msgspec.Struct):
    """One read of a subject's data by someone else."""

    read_at: datetime
    agent_id: UUID
    """Who read: an agent's id, or a compliance officer's (an export)."""
    subject_id: UUID
    what: str
    """The route read, by its template (`GET /v1/agent/customers/{customer_id}/session`)."""
    resource_id: UUID | None
    """The application or conversation read, where the route names one."""
    purpose: str
    """Why, as the reader gave it (`X-Purpose`); stored sealed."""

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditItem:
        return cls(
            entry.read_at,
            entry.agent_id,
            entry.subject_id,
            entry.what,
            entry.resource_id,
            entry.purpose,
        )


class AuditPageResponse(msgspec.Struct):
    """A page of the access audit; `next_cursor` fetches the next (null: this is the last)."""

    items: list[AuditItem]
    next_cursor: str | None


def _only_known_query(request: Request[Any, Any, Any]) -> None:
    """Refuse a query parameter the route does not take: a misspelt filter would otherwise
    widen the answer to everyone's reads."""
    for name in request.query_params:
        if name not in _QUERY:
            message = f"unknown query parameter; this route takes {', '.join(sorted(_QUERY))}"
            raise ValidationException(
                f"{name[:40]!r}: {message}",
                extra=[{"key": name[:40], "source": "query", "message": message}],
            )


def _aware(name: str, value: datetime | None) -> datetime | None:
    if value is not None and value.utcoffset() is None:
        message = "must carry a UTC offset (2026-01-31T09:00:00Z)"
        raise ValidationException(
            f"{name} {message}", extra=[{"key": name, "source": "query", "message": message}]
        )
    return value


class AccessAuditController(Controller):
    path = "/v1/privacy/audit"
    guards = [compliance_only]
    tags = ["privacy"]

    @get(
        "",
        summary="The access audit: who read whose data, when and why",
        before_request=_only_known_query,
    )
    async def audit(
        self,
        runtime: NamedDependency[Runtime],
        agent_id: Annotated[
            UUID | None, QueryParameter(description="Only reads by this agent (or officer).")
        ] = None,
        subject_id: Annotated[
            UUID | None, QueryParameter(description="Only reads of this subject's data.")
        ] = None,
        since: Annotated[
            datetime | None, QueryParameter(description="Only reads at or after this time.")
        ] = None,
        until: Annotated[
            datetime | None, QueryParameter(description="Only reads before this time.")
        ] = None,
        order: Annotated[
            Order, QueryParameter(description="newest (default) or oldest first.")
        ] = "newest",
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 20,
        cursor: Annotated[
            str | None, QueryParameter(max_length=200, description="The last page's next_cursor.")
        ] = None,
    ) -> AuditPageResponse:
        """Every read an agent made of a customer's data, and every compliance export, with
        the purpose given; the entries outlive the subject's erasure."""
        where = AuditFilter(
            agent_id=agent_id,
            subject_id=subject_id,
            since=_aware("since", since),
            until=_aware("until", until),
        )
        found = await runtime.audit.page(where, limit=limit, order=order, cursor=cursor)
        return AuditPageResponse([AuditItem.of(e) for e in found.entries], found.next_cursor)
