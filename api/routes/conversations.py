"""Conversation routes for each audience: the customer's devices (`/v1/me/conversations`), the
agents (`/v1/agent/conversations`: the queue of waiting handoffs, take over, reply, transfer,
resolve) and services (`/v1/service/...`: a bot's turns and handoffs, inbound email and SMS).

Agents' and bots' reads of a transcript are audited like every read of a customer's data.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, Parameter, QueryParameter

from aggregates.consent import MARKETING
from aggregates.conversation import Conversation, Medium, Status
from aggregates.metadata import EventMeta
from api.auth import Principal, agent_only, customer_only, service_only
from api.conversation_schemas import (
    ConversationAnswer,
    ConversationSummary,
    HandoffBody,
    IdentifierAnswer,
    IdentifierBody,
    InboundBody,
    OpenConversation,
    OutboundTurnBody,
    RatingBody,
    Transcript,
    TransferBody,
    TurnBody,
)
from api.customer_requests import (
    ChannelHeader,
    IdempotencyKey,
    IfNoneMatch,
    Me,
    customer_meta,
    idempotency_key_of,
)
from api.etags import check_not_modified, content_etag, version_etag
from api.routes.agent import Purpose, audited_what
from continuity import conversations
from continuity.conversation_queue import MAX_PAGE, Order, QueueFilter, page
from continuity.conversations import MAX_TRANSCRIPT_PAGE, Action
from continuity.runtime import Runtime

Caller = Request[Principal, Any, Any]
ConversationId = Annotated[UUID, Parameter(description="The conversation's id.")]
Before = Annotated[
    int | None,
    QueryParameter(
        ge=2, le=2**31 - 1, description="The page before this version (a page's next_before)."
    ),
]
Limit = Annotated[
    int, QueryParameter(ge=1, le=MAX_TRANSCRIPT_PAGE, description="Entries per page.")
]
MAX_WAITED_MINUTES = 60 * 24 * 365
BOT_PURPOSE = "a bot answering in the conversation"


def _answer(conversation: Conversation, status_code: int = 200) -> Response[ConversationAnswer]:
    return Response(
        ConversationAnswer.of(conversation),
        status_code=status_code,
        headers={"ETag": version_etag(conversation.version)},
    )


def _transcript(conversation: Conversation, envelopes: list[Any]) -> Response[Transcript]:
    return Response(
        Transcript.of(conversation, envelopes), headers={"ETag": version_etag(conversation.version)}
    )


def _agent_meta(agent: Principal) -> EventMeta:
    return EventMeta("agent", None, "agent", str(agent.subject_id))


def _purpose(turn: OutboundTurnBody) -> str | None:
    """The consent an outbound turn needs: marketing, if it is marked so."""
    return MARKETING if turn.marketing else None


def _bot_meta(bot: Principal) -> EventMeta:
    return EventMeta("chat", None, "bot", str(bot.subject_id))


class MyConversationsController(Controller):
    path = "/v1/me/conversations"
    guards = [customer_only]
    tags = ["conversations"]

    async def _act(
        self,
        request: Me,
        runtime: Runtime,
        conversation_id: UUID,
        action: Action,
        idempotency_key: str | None,
        channel: str | None,
    ) -> Response[ConversationAnswer]:
        conversation = await runtime.conversations.act(
            conversation_id,
            customer_meta(request.user, channel),
            action,
            idempotency_key=idempotency_key_of(idempotency_key),
            subject_id=request.user.subject_id,
        )
        return _answer(conversation)

    @get("", summary="The customer's conversations with their last turns, most recent first")
    async def list_conversations(
        self, request: Me, runtime: NamedDependency[Runtime], if_none_match: IfNoneMatch = None
    ) -> Response[list[ConversationSummary]]:
        views = await runtime.conversations.of_customer(request.user.subject_id)
        body = [ConversationSummary.of(v) for v in views]
        etag = content_etag(body)
        check_not_modified(if_none_match, etag)
        return Response(body, headers={"ETag": etag})

    @post("", status_code=201, summary="Open a conversation, with a first turn if given")
    async def open_conversation(
        self,
        request: Me,
        runtime: NamedDependency[Runtime],
        data: JSONBody[OpenConversation],
        idempotency_key: IdempotencyKey = None,
        channel: ChannelHeader = None,
    ) -> Response[ConversationAnswer]:
        conversation = await runtime.conversations.open(
            request.user.subject_id,
            customer_meta(request.user, channel),
            data.medium,
            idempotency_key=idempotency_key_of(idempotency_key),
            first=data.first(),
        )
        response = _answer(conversation, 201)
        response.headers["Location"] = f"{self.path}/{conversation.id}"
        return response

    @get("/{conversation_id:uuid}", summary="A conversation and a page of its transcript")
    async def read(
        self,
        request: Me,
        runtime: NamedDependency[Runtime],
        conversation_id: ConversationId,
        before: Before = None,
        limit: Limit = 200,
    ) -> Response[Transcript]:
        conversation, envelopes = await runtime.conversations.transcript(
            conversation_id, subject_id=request.user.subject_id, before=before, limit=limit
        )
        return _transcript(conversation, envelopes)

    @post("/{conversation_id:uuid}/turns", status_code=200, summary="Say something")
    async def add_turn(
        self,
        request: Me,
        runtime: NamedDependency[Runtime],
        conversation_id: ConversationId,
        data: JSONBody[TurnBody],
        idempotency_key: IdempotencyKey = None,
        channel: ChannelHeader = None,
    ) -> Response[ConversationAnswer]:
        action = conversations.say("customer", None, data.turn())
        return await self._act(request, runtime, conversation_id, action, idempotency_key, channel)

    @post(
        "/{conversation_id:uuid}/handoff",
        status_code=200,
        summary="Ask for a human agent: the conversation waits in the agents' queue",
    )
    async def hand_off(
        self,
        request: Me,
        runtime: NamedDependency[Runtime],
        conversation_id: ConversationId,
        data: JSONBody[HandoffBody],
        idempotency_key: IdempotencyKey = None,
        channel: ChannelHeader = None,
    ) -> Response[ConversationAnswer]:
        action = conversations.hand_off(data.reason, None)
        return await self._act(request, runtime, conversation_id, action, idempotency_key, channel)

    @post("/{conversation_id:uuid}/resolve", status_code=200, summary="Close it: resolved")
    async def resolve(
        self,
        request: Me,
        runtime: NamedDependency[Runtime],
        conversation_id: ConversationId,
        idempotency_key: IdempotencyKey = None,
        channel: ChannelHeader = None,
    ) -> Response[ConversationAnswer]:
        action = conversations.resolve("customer")
        return await self._act(request, runtime, conversation_id, action, idempotency_key, channel)

    @post(
        "/{conversation_id:uuid}/rating",
        status_code=200,
        summary="Rate a resolved conversation, 1 to 5",
    )
    async def rate(
        self,
        request: Me,
        runtime: NamedDependency[Runtime],
        conversation_id: ConversationId,
        data: JSONBody[RatingBody],
        idempotency_key: IdempotencyKey = None,
        channel: ChannelHeader = None,
    ) -> Response[ConversationAnswer]:
        action = conversations.rate(data.rating)
        return await self._act(request, runtime, conversation_id, action, idempotency_key, channel)

    @post("/{conversation_id:uuid}/reopen", status_code=200, summary="Reopen a resolved one")
    async def reopen(
        self,
        request: Me,
        runtime: NamedDependency[Runtime],
        conversation_id: ConversationId,
        idempotency_key: IdempotencyKey = None,
        channel: ChannelHeader = None,
    ) -> Response[ConversationAnswer]:
        action = conversations.reopen("customer")
        return await self._act(request, runtime, conversation_id, action, idempotency_key, channel)


class QueuedConversation(msgspec.Struct):
    conversation_id: UUID
    subject_id: UUID
    medium: str
    status: str
    status_since: datetime
    started_at: datetime
    last_activity: datetime
    turns: int
    version: int


class ConversationQueuePage(msgspec.Struct):
    """A page of the queue; `next_cursor` fetches the next (null: this is the last)."""

    items: list[QueuedConversation]
    next_cursor: str | None


class AgentConversationsController(Controller):
    path = "/v1/agent/conversations"
    guards = [agent_only]
    tags = ["agent"]

    async def _act(
        self,
        request: Caller,
        runtime: Runtime,
        conversation_id: UUID,
        action: Action,
        key: str | None,
        purpose: str | None = None,
    ) -> Response[ConversationAnswer]:
        conversation = await runtime.conversations.act(
            conversation_id,
            _agent_meta(request.user),
            action,
            idempotency_key=idempotency_key_of(key),
            purpose=purpose,
        )
        return _answer(conversation)

    @get("", summary="The queue: handed-off conversations waiting for an agent, longest first")
    async def queue(
        self,
        runtime: NamedDependency[Runtime],
        status: Annotated[
            Status, QueryParameter(description="Conversations in this status (default waiting).")
        ] = "waiting",
        medium: Annotated[
            Medium | None, QueryParameter(description="Only conversations opened on this medium.")
        ] = None,
        waited_minutes: Annotated[
            int | None,
            QueryParameter(
                ge=0, le=MAX_WAITED_MINUTES, description="In their status for at least this long."
            ),
        ] = None,
        order: Annotated[
            Order, QueryParameter(description="oldest (default: longest waiting) or newest first.")
        ] = "oldest",
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 20,
        cursor: Annotated[
            str | None, QueryParameter(max_length=200, description="The last page's next_cursor.")
        ] = None,
    ) -> ConversationQueuePage:
        """Served by an asynchronous projection: a handoff shows here once the projection's
        runner has applied it (usually within a second). No column is personal, so reading
        the queue needs no purpose; opening a conversation does."""
        since = (
            None
            if waited_minutes is None
            else datetime.now(UTC) - timedelta(minutes=waited_minutes)
        )
        where = QueueFilter(status=status, medium=medium, since=since)
        found = await page(runtime.pool, where, limit=limit, order=order, cursor=cursor)
        items = [QueuedConversation(**msgspec.structs.asdict(row)) for row in found.rows]
        return ConversationQueuePage(items, found.next_cursor)

    @get(
        "/{conversation_id:uuid}",
        summary="A conversation with its transcript: every turn and handoff (audited)",
    )
    async def read(
        self,
        request: Caller,
        runtime: NamedDependency[Runtime],
        conversation_id: ConversationId,
        purpose: Purpose,
        before: Before = None,
        limit: Limit = 200,
    ) -> Response[Transcript]:
        conversation, envelopes = await runtime.conversations.transcript(
            conversation_id, before=before, limit=limit
        )
        await runtime.audit.record(
            request.user.subject_id,
            conversation.subject_id,
            audited_what(request),
            purpose,
            conversation_id,
        )
        return _transcript(conversation, envelopes)

    @post(
        "/{conversation_id:uuid}/accept",
        status_code=200,
        summary="Take over a waiting conversation; a second agent is refused (409)",
    )
    async def accept(
        self,
        request: Caller,
        runtime: NamedDependency[Runtime],
        conversation_id: ConversationId,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[ConversationAnswer]:
        action = conversations.accept(str(request.user.subject_id))
        return await self._act(request, runtime, conversation_id, action, idempotency_key)

    @post(
        "/{conversation_id:uuid}/turns",
        status_code=200,
        summary="Reply, as the agent who has the conversation",
    )
    async def reply(
        self,
        request: Caller,
        runtime: NamedDependency[Runtime],
        conversation_id: ConversationId,
        data: JSONBody[OutboundTurnBody],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[ConversationAnswer]:
        """A turn marked `marketing` is refused (403 consent-required) unless the customer
        consented to marketing."""
        action = conversations.say("agent", str(request.user.subject_id), data.turn())
        return await self._act(
            request, runtime, conversation_id, action, idempotency_key, _purpose(data)
        )

    @post(
        "/{conversation_id:uuid}/transfer",
        status_code=200,
        summary="Hand the conversation to another agent",
    )
    async def transfer(
        self,
        request: Caller,
        runtime: NamedDependency[Runtime],
        conversation_id: ConversationId,
        data: JSONBody[TransferBody],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[ConversationAnswer]:
        action = conversations.transfer(str(request.user.subject_id), str(data.to_agent))
        return await self._act(request, runtime, conversation_id, action, idempotency_key)

    @post("/{conversation_id:uuid}/resolve", status_code=200, summary="Resolve it")
    async def resolve(
        self,
        request: Caller,
        runtime: NamedDependency[Runtime],
        conversation_id: ConversationId,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[ConversationAnswer]:
        action = conversations.resolve("agent", str(request.user.subject_id))
        return await self._act(request, runtime, conversation_id, action, idempotency_key)


class InboundAnswer(msgspec.Struct):
    """Where the message went: whose conversation, and whether either is new (an unknown
    sender is a new guest customer)."""

    subject_id: UUID
    conversation_id: UUID
    new_customer: bool
    new_conversation: bool
    conversation: ConversationAnswer


class ServiceController(Controller):
    path = "/v1/service"
    guards = [service_only]
    tags = ["service"]

    @get(
        "/conversations/{conversation_id:uuid}",
        summary="A conversation's transcript, for the bot answering in it (audited)",
    )
    async def read(
        self,
        request: Caller,
        runtime: NamedDependency[Runtime],
        conversation_id: ConversationId,
        before: Before = None,
        limit: Limit = 200,
    ) -> Response[Transcript]:
        conversation, envelopes = await runtime.conversations.transcript(
            conversation_id, before=before, limit=limit
        )
        await runtime.audit.record(
            request.user.subject_id,
            conversation.subject_id,
            audited_what(request),
            BOT_PURPOSE,
            conversation_id,
        )
        return _transcript(conversation, envelopes)

    @post(
        "/conversations/{conversation_id:uuid}/turns",
        status_code=200,
        summary="A bot's turn; refused (409) once an agent has taken over",
    )
    async def add_turn(
        self,
        request: Caller,
        runtime: NamedDependency[Runtime],
        conversation_id: ConversationId,
        data: JSONBody[OutboundTurnBody],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[ConversationAnswer]:
        """A turn marked `marketing` is refused (403 consent-required) unless the customer
        consented to marketing."""
        conversation = await runtime.conversations.act(
            conversation_id,
            _bot_meta(request.user),
            conversations.say("bot", str(request.user.subject_id), data.turn()),
            idempotency_key=idempotency_key_of(idempotency_key),
            purpose=_purpose(data),
        )
        return _answer(conversation)

    @post(
        "/conversations/{conversation_id:uuid}/handoff",
        status_code=200,
        summary="The bot hands the conversation to a human, with why",
    )
    async def hand_off(
        self,
        request: Caller,
        runtime: NamedDependency[Runtime],
        conversation_id: ConversationId,
        data: JSONBody[HandoffBody],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[ConversationAnswer]:
        conversation = await runtime.conversations.act(
            conversation_id,
            _bot_meta(request.user),
            conversations.hand_off(data.reason, str(request.user.subject_id)),
            idempotency_key=idempotency_key_of(idempotency_key),
        )
        return _answer(conversation)

    @post(
        "/inbound",
        status_code=200,
        summary="An inbound email or SMS, threaded into its sender's open conversation",
    )
    async def inbound(
        self,
        runtime: NamedDependency[Runtime],
        data: JSONBody[InboundBody],
        idempotency_key: IdempotencyKey = None,
    ) -> InboundAnswer:
        """The sender is found by the keyed hash of their address or number; an unknown
        sender becomes a new guest customer with a new conversation. Send the message's own
        id as `Idempotency-Key` (a UUID derived from it): a redelivery is then answered, not
        threaded twice."""
        threaded = await runtime.inbound.receive(
            data.message(), idempotency_key=idempotency_key_of(idempotency_key)
        )
        conversation = threaded.conversation
        return InboundAnswer(
            subject_id=conversation.subject_id,
            conversation_id=conversation.id,
            new_customer=threaded.new_customer,
            new_conversation=threaded.new_conversation,
            conversation=ConversationAnswer.of(conversation),
        )


class MyIdentifiersController(Controller):
    path = "/v1/me/identifiers"
    guards = [customer_only]
    tags = ["device"]

    @post("", status_code=200, summary="Register an email or phone number as the customer's")
    async def register(
        self, request: Me, runtime: NamedDependency[Runtime], data: JSONBody[IdentifierBody]
    ) -> IdentifierAnswer:
        """So that their emails and texts thread into their conversations. One registered to
        another customer is refused (409)."""
        new = await runtime.identifiers.register(request.user.subject_id, data.kind, data.value)
        return IdentifierAnswer(data.kind, new)


class AgentIdentifiersController(Controller):
    path = "/v1/agent/customers"
    guards = [agent_only]
    tags = ["agent"]

    @post(
        "/{customer_id:uuid}/identifiers",
        status_code=200,
        summary="Register an email or phone number as a customer's (audited)",
    )
    async def register(
        self,
        request: Caller,
        runtime: NamedDependency[Runtime],
        customer_id: Annotated[UUID, Parameter(description="The customer's subject id.")],
        data: JSONBody[IdentifierBody],
        purpose: Purpose,
    ) -> IdentifierAnswer:
        new = await runtime.identifiers.register(customer_id, data.kind, data.value)
        await runtime.audit.record(
            request.user.subject_id, customer_id, audited_what(request), purpose
        )
        return IdentifierAnswer(data.kind, new)
