"""Live update routes: a customer's session, or (for an agent, audited) a customer's, as
Server-Sent Events (`api/live_events.py` has the message format and the stream).

Both take the customer from the route's authority alone: a customer's token names the only
subject whose stream it may open, and an agent names the customer in the path, with a purpose
(`X-Purpose`) recorded in the access audit before the first byte of data is sent.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import HeaderParameter
from litestar.response import ServerSentEvent

from api.auth import agent_only, customer_only
from api.customer_requests import Me
from api.live_events import QUEUE_TOPICS, event_stream, queue_message_of
from api.routes.agent import Agent, CustomerId, Purpose, audited_what
from continuity.errors import SubjectErased
from continuity.runtime import Runtime

LAST_EVENT_ID = r"^[0-9]{1,18}$"
"""A log position: digits only, short enough for a bigint."""
LastEventId = Annotated[
    str | None,
    HeaderParameter(
        name="Last-Event-ID",
        required=False,
        pattern=LAST_EVENT_ID,
        max_length=18,
        description="The `id` of the last event received (a log position): the stream resumes"
        " right after it, with every event missed, in order, none twice. Browsers send it"
        " themselves when they reconnect.",
    ),
]


async def _events(runtime: Runtime, subject_id: UUID, last_event_id: str | None) -> ServerSentEvent:
    if await runtime.vault.erased_among([subject_id]):
        raise SubjectErased(subject_id)
    after = None if last_event_id is None else int(last_event_id)
    stream = event_stream(
        runtime.live, subject_id, after=after, keepalive=runtime.settings.sse_keepalive
    )
    return ServerSentEvent(stream)


class LiveController(Controller):
    path = "/v1"
    tags = ["live"]

    @get(
        "/me/session/events",
        guards=[customer_only],
        summary="Live updates of the customer's session (Server-Sent Events)",
    )
    async def my_session_events(
        self,
        request: Me,
        runtime: NamedDependency[Runtime],
        last_event_id: LastEventId = None,
    ) -> ServerSentEvent:
        """Every change to the customer's cart, applications and conversations, from any
        device or channel, as it is recorded."""
        return await _events(runtime, request.user.subject_id, last_event_id)

    @get(
        "/agent/customers/{customer_id:uuid}/events",
        guards=[agent_only],
        summary="Live updates of a customer's session (Server-Sent Events, audited)",
    )
    async def customer_events(
        self,
        request: Agent,
        runtime: NamedDependency[Runtime],
        customer_id: CustomerId,
        purpose: Purpose,
        last_event_id: LastEventId = None,
    ) -> ServerSentEvent:
        """What the customer's own devices receive; opening the stream is one audited read."""
        response = await _events(runtime, customer_id, last_event_id)
        await runtime.audit.record(
            request.user.subject_id, customer_id, audited_what(request), purpose
        )
        return response

    @get(
        "/agent/conversations/events",
        guards=[agent_only],
        summary="Live changes to the agents' queue: handoffs as they arrive, accepted, resolved",
    )
    async def queue_events(
        self, runtime: NamedDependency[Runtime], last_event_id: LastEventId = None
    ) -> ServerSentEvent:
        """Every handoff (`conversation.handoff_requested`: now waiting), acceptance
        (`conversation.handoff_accepted`) and resolution (`conversation.resolved`) across all
        customers, as it is recorded, so a console adds and removes queue rows at once; a
        guest's conversation moved to the customer who signed in arrives in its status
        (`conversation.imported`) as the guest's leaves (`conversation.moved_to`). Like
        the queue, a message holds nothing personal (ids, status, time), so it needs no
        purpose."""
        after = None if last_event_id is None else int(last_event_id)
        stream = event_stream(
            runtime.live,
            None,
            QUEUE_TOPICS,
            after=after,
            keepalive=runtime.settings.sse_keepalive,
            render=queue_message_of,
        )
        return ServerSentEvent(stream)
