"""The agent's pages: the live queue, and a customer's page with their session, timeline and
open conversations, where the agent takes over, replies, transfers and resolves.

A customer's data is shown only with a purpose the agent picks from `PURPOSES`, and every
render of it (the page, each live refresh, opening its event stream) is one entry in the access
audit. The purpose travels in the URL as its code: a fixed word, never free text, so nothing
personal lands in a URL or a browser's history.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID, uuid4

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.exceptions import ValidationException
from litestar.params import Body, HeaderParameter, Parameter, QueryParameter
from litestar.response import Redirect, ServerSentEvent, Template

from aggregates.metadata import EventMeta
from api.auth import Principal, agent_only
from api.console.cookies import CONSOLE
from api.console.forms import Purposeful, Reply, Transfer
from api.console.live import CatchUp, changes
from api.conversation_schemas import Transcript
from api.customer_requests import idempotency_key_of
from api.live_events import QUEUE_TOPICS
from api.routes.timeline import TimelineItem
from api.schemas import SessionResponse
from continuity import application_queue, conversation_queue, conversations
from continuity.application_queue import QueueFilter as ApplicationFilter
from continuity.conversation_queue import QueueFilter as ConversationFilter
from continuity.conversations import Action
from continuity.runtime import Runtime
from continuity.timeline import TIMELINE, TimelineFilter

Agent = Request[Principal, Any, Any]
Form = Body(media_type=RequestEncodingType.URL_ENCODED)
CustomerId = Annotated[UUID, Parameter(description="The customer's subject id.")]
ConversationId = Annotated[UUID, Parameter(description="The conversation's id.")]
PurposeCode = Annotated[str | None, QueryParameter(max_length=40)]
ResumedFrom = Annotated[str | None, HeaderParameter(name="Last-Event-ID", max_length=20)]

PURPOSES: dict[str, str] = {
    "support": "Helping the customer in a conversation",
    "application": "Helping the customer with an application",
    "order": "Helping with an order or a cart",
    "complaint": "Handling a complaint",
}
"""What an agent may open a customer's page for: the code in the URL, the words in the audit."""
QUEUE_SIZE = 50
TRANSCRIPT_TURNS = 100
TIMELINE_ENTRIES = 30
OPEN = frozenset({"open", "waiting", "with_agent"})
"""Conversation states an agent can still act in."""


def _no_purpose() -> ValidationException:
    message = f"pick a purpose: one of {', '.join(PURPOSES)}"
    return ValidationException(message, extra=[{"key": "purpose", "message": message}])


def _purpose(code: str | None) -> str | None:
    """The audit's words for a purpose code; None for no code or an unknown one."""
    return PURPOSES.get(code) if code is not None else None


def customer_url(customer_id: UUID, purpose: str) -> str:
    return f"{CONSOLE}/customers/{customer_id}?purpose={purpose}"


@dataclass(frozen=True)
class OpenConversation:
    transcript: Transcript
    medium: str
    """Where it was opened: where a reply goes."""
    mine: bool
    """The signed-in agent has it: reply, transfer and resolve are theirs."""


async def _customer(
    runtime: Runtime, request: Agent, customer_id: UUID, purpose: str
) -> dict[str, Any]:
    """What the customer page shows, read and audited as one view."""
    view = await runtime.carts.session(customer_id)
    session = SessionResponse.of(customer_id, view, await runtime.devices.names(customer_id))
    found = await runtime.timeline.page(
        runtime.pool, customer_id, TimelineFilter(), limit=TIMELINE_ENTRIES
    )
    me = str(request.user.subject_id)
    open_ones = []
    for summary in session.conversations:
        if summary.status not in OPEN:
            continue
        conversation, envelopes = await runtime.conversations.transcript(
            summary.conversation_id, subject_id=customer_id, limit=TRANSCRIPT_TURNS
        )
        transcript = Transcript.of(conversation, envelopes)
        open_ones.append(OpenConversation(transcript, summary.medium, conversation.agent_id == me))
    what = f"GET {CONSOLE}/customers/{{customer_id}}"
    await runtime.audit.record(request.user.subject_id, customer_id, what, PURPOSES[purpose])
    return {
        "session": session,
        "timeline": [TimelineItem.of(e) for e in found.entries],
        "conversations": open_ones,
        "purpose": purpose,
        "purpose_text": PURPOSES[purpose],
        "customer_id": customer_id,
        "me": me,
        "form_key": uuid4,
    }


async def _customer_page(
    runtime: Runtime, request: Agent, customer_id: UUID, purpose: str | None, template: str
) -> Template:
    if purpose is None or _purpose(purpose) is None:
        context = {"customer_id": customer_id, "purposes": PURPOSES, "page": "queue"}
        return Template("purpose.html", context=context)
    context = await _customer(runtime, request, customer_id, purpose)
    return Template(template, context={**context, "page": "queue"})


async def _queue(runtime: Runtime) -> dict[str, Any]:
    waiting = await conversation_queue.page(
        runtime.pool, ConversationFilter(status="waiting"), limit=QUEUE_SIZE, order="oldest"
    )
    applications = await application_queue.page(
        runtime.pool, ApplicationFilter(status="in_progress"), limit=QUEUE_SIZE, order="recent"
    )
    return {"waiting": waiting.rows, "applications": applications.rows, "purposes": PURPOSES}


class AgentPages(Controller):
    path = CONSOLE
    guards = [agent_only]
    include_in_schema = False

    @get("/queue")
    async def queue(self, runtime: NamedDependency[Runtime]) -> Template:
        return Template("queue.html", context={**await _queue(runtime), "page": "queue"})

    @get("/queue/rows")
    async def queue_rows(self, runtime: NamedDependency[Runtime]) -> Template:
        return Template("_queue_rows.html", context=await _queue(runtime))

    @get("/queue/events")
    async def queue_events(
        self,
        runtime: NamedDependency[Runtime],
        catch_up: NamedDependency[CatchUp],
        last_event_id: ResumedFrom = None,
    ) -> ServerSentEvent:
        """`changed` when a handoff arrives or leaves the queue, or an application moves."""
        topics = (*QUEUE_TOPICS, *application_queue.TOPICS)
        names = (conversation_queue.QUEUE, application_queue.QUEUE)
        resumed = last_event_id is not None
        return ServerSentEvent(changes(runtime, catch_up, None, topics, names, resumed=resumed))

    @get("/customers/{customer_id:uuid}")
    async def customer(
        self,
        request: Agent,
        runtime: NamedDependency[Runtime],
        customer_id: CustomerId,
        purpose: PurposeCode = None,
    ) -> Template:
        """Without a purpose, the page asks for one and shows nothing of the customer."""
        return await _customer_page(runtime, request, customer_id, purpose, "customer.html")

    @get("/customers/{customer_id:uuid}/live")
    async def customer_live(
        self,
        request: Agent,
        runtime: NamedDependency[Runtime],
        customer_id: CustomerId,
        purpose: PurposeCode = None,
    ) -> Template:
        """The page's live part, fetched again on each `changed`."""
        return await _customer_page(runtime, request, customer_id, purpose, "_customer_live.html")

    @get("/customers/{customer_id:uuid}/events")
    async def customer_events(
        self,
        request: Agent,
        runtime: NamedDependency[Runtime],
        catch_up: NamedDependency[CatchUp],
        customer_id: CustomerId,
        purpose: PurposeCode = None,
        last_event_id: ResumedFrom = None,
    ) -> ServerSentEvent:
        """`changed` on every event of the customer's, from any device or channel, once the
        timeline has it; opening the stream is an audited read, as in the API."""
        words = _purpose(purpose)
        if words is None:
            raise _no_purpose()
        what = f"GET {CONSOLE}/customers/{{customer_id}}/events"
        await runtime.audit.record(request.user.subject_id, customer_id, what, words)
        resumed = last_event_id is not None
        return ServerSentEvent(
            changes(runtime, catch_up, customer_id, (), (TIMELINE,), resumed=resumed)
        )

    async def _act(
        self,
        request: Agent,
        runtime: Runtime,
        conversation_id: UUID,
        form: Purposeful,
        action: Action,
    ) -> Redirect:
        if _purpose(form.purpose) is None:
            raise _no_purpose()
        agent = request.user
        conversation = await runtime.conversations.act(
            conversation_id,
            EventMeta("agent", None, "agent", str(agent.subject_id)),
            action,
            idempotency_key=idempotency_key_of(
                None if form.idempotency_key is None else str(form.idempotency_key)
            ),
        )
        return Redirect(customer_url(conversation.subject_id, form.purpose), status_code=303)

    @post("/conversations/{conversation_id:uuid}/accept")
    async def accept(
        self,
        request: Agent,
        runtime: NamedDependency[Runtime],
        conversation_id: ConversationId,
        data: Annotated[Purposeful, Form],
    ) -> Redirect:
        action = conversations.accept(str(request.user.subject_id))
        return await self._act(request, runtime, conversation_id, data, action)

    @post("/conversations/{conversation_id:uuid}/reply")
    async def reply(
        self,
        request: Agent,
        runtime: NamedDependency[Runtime],
        conversation_id: ConversationId,
        data: Annotated[Reply, Form],
    ) -> Redirect:
        turn = conversations.Turn(data.text.strip(), data.medium, ())
        action = conversations.say("agent", str(request.user.subject_id), turn)
        return await self._act(request, runtime, conversation_id, data, action)

    @post("/conversations/{conversation_id:uuid}/transfer")
    async def transfer(
        self,
        request: Agent,
        runtime: NamedDependency[Runtime],
        conversation_id: ConversationId,
        data: Annotated[Transfer, Form],
    ) -> Redirect:
        action = conversations.transfer(str(request.user.subject_id), str(data.to_agent))
        return await self._act(request, runtime, conversation_id, data, action)

    @post("/conversations/{conversation_id:uuid}/resolve")
    async def resolve(
        self,
        request: Agent,
        runtime: NamedDependency[Runtime],
        conversation_id: ConversationId,
        data: Annotated[Purposeful, Form],
    ) -> Redirect:
        action = conversations.resolve("agent", str(request.user.subject_id))
        return await self._act(request, runtime, conversation_id, data, action)
