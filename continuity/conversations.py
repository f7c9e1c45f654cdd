"""The conversation service: customers, bots and agents act on a customer's conversations.

Every action loads the conversation (its snapshot and the events after it: a conversation of
10,000 turns costs what one of 10 does), runs the command and appends its events with the
session view's row, in the subject's turn (`continuity.commands`). Two agents accepting one
handoff at once: the second's append conflicts, it runs again on the fresh state and is refused
("another agent has taken this conversation already"). A retried request (same
`Idempotency-Key`) is answered from what the first one recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

import msgspec

from aggregates.conversation import Attachment, Author, Conversation, Medium
from aggregates.errors import ConsentRequired, NotFound
from aggregates.metadata import EventMeta
from continuity.commands import Commands
from continuity.errors import SubjectErased
from continuity.registry import Reads
from continuity.repository import IdempotencyKey, Repository
from continuity.subject_views import SealedViews
from continuity.turns import Turns
from privacy.vault import KeyVault
from projections import consent
from projections.conversation import ConversationView
from projections.envelope import Envelope
from projections.session import SessionView

MAX_TRANSCRIPT_PAGE = 1_000


@dataclass(frozen=True)
class Action:
    """A command on a conversation; `fingerprint` tells a retry from a reused key."""

    run: Callable[[Conversation], None]
    fingerprint: bytes


@dataclass(frozen=True)
class Turn:
    """What a turn says, on which medium; an email's may have a subject line."""

    text: str
    medium: Medium
    attachments: tuple[Attachment, ...] = ()
    subject: str | None = None

    def fingerprint(self) -> list[object]:
        return [self.text, self.medium, list(self.attachments), self.subject]


def say(author: Author, author_id: str | None, turn: Turn) -> Action:
    return Action(
        lambda c: c.add_turn(
            author,
            turn.text,
            turn.medium,
            author_id=author_id,
            attachments=list(turn.attachments),
            subject=turn.subject,
        ),
        msgspec.msgpack.encode(["conversation", "turn", author, author_id, *turn.fingerprint()]),
    )


def hand_off(reason: str, requested_by: str | None) -> Action:
    return Action(
        lambda c: c.request_handoff(reason, requested_by),
        msgspec.msgpack.encode(["conversation", "handoff", reason, requested_by]),
    )


def accept(agent_id: str) -> Action:
    return Action(
        lambda c: c.accept(agent_id), msgspec.msgpack.encode(["conversation", "accept", agent_id])
    )


def transfer(from_agent: str, to_agent: str) -> Action:
    return Action(
        lambda c: c.transfer(from_agent, to_agent),
        msgspec.msgpack.encode(["conversation", "transfer", from_agent, to_agent]),
    )


def resolve(by: Author, agent_id: str | None = None) -> Action:
    return Action(
        lambda c: c.resolve(by, agent_id),
        msgspec.msgpack.encode(["conversation", "resolve", by, agent_id]),
    )


def rate(rating: int) -> Action:
    return Action(
        lambda c: c.rate(rating), msgspec.msgpack.encode(["conversation", "rate", rating])
    )


def reopen(by: Author) -> Action:
    return Action(lambda c: c.reopen(by), msgspec.msgpack.encode(["conversation", "reopen", by]))


class ConversationService:
    def __init__(
        self,
        repository: Repository,
        sessions: SealedViews[SessionView],
        vault: KeyVault,
        *,
        turns: Turns | None = None,
    ) -> None:
        self.repository = repository
        self.sessions = sessions
        self.vault = vault
        self.pool = repository.store.pool
        self.commands = Commands(self.pool, vault, turns or Turns())

    async def of_customer(self, subject_id: UUID) -> list[ConversationView]:
        """The customer's conversations as the session view has them (read-your-writes)."""
        view = await self.sessions.load(self.pool, subject_id)
        if view is None:
            if await self.vault.erased_among([subject_id]):
                raise SubjectErased(subject_id)
            return []
        return view.conversations

    async def get(self, conversation_id: UUID, subject_id: UUID | None = None) -> Conversation:
        """The conversation (the customer's, when `subject_id` is given); NotFound if there is
        no such conversation of theirs, SubjectErased after its subject's erasure."""
        conversation = await self.repository.load(conversation_id, Conversation)
        if conversation is None or subject_id not in (None, conversation.subject_id):
            raise NotFound("there is no such conversation", field="conversation_id")
        return conversation

    async def open(
        self,
        subject_id: UUID,
        meta: EventMeta,
        medium: Medium,
        *,
        idempotency_key: UUID,
        first: Turn | None = None,
        author: Author = "customer",
    ) -> Conversation:
        """A new conversation, with its first turn if given; a retried open (same key)
        answers the conversation the first one opened."""
        request = IdempotencyKey(subject_id, idempotency_key)
        fingerprint = msgspec.msgpack.encode(
            ["conversation", "open", medium, author, first and first.fingerprint()]
        )

        async def attempt() -> Conversation:
            opened = Conversation.open_id(subject_id, idempotency_key)
            existing = await self.repository.load(opened, Conversation)
            if existing is not None and await self.commands.recorded(request, fingerprint):
                return existing
            conversation = Conversation.open(subject_id, medium, idempotency_key)
            if first is not None:
                say(author, meta.actor_id, first).run(conversation)
            await self.repository.save(conversation, subject_id, meta, request, fingerprint)
            return conversation

        return await self.commands.run(subject_id, attempt)

    async def act(
        self,
        conversation_id: UUID,
        meta: EventMeta,
        action: Action,
        *,
        idempotency_key: UUID,
        subject_id: UUID | None = None,
        purpose: str | None = None,
    ) -> Conversation:
        """Run `action` on the conversation (the customer's own, when `subject_id` is given:
        agents and bots act on any) and return it after. With `purpose` (marketing), only
        while the customer consents to it (ConsentRequired otherwise, nothing recorded); the
        append is refused if their session row moved since it was read, so a withdrawal
        recorded in between is seen when it runs again."""
        owner = subject_id or (await self.get(conversation_id)).subject_id
        request = IdempotencyKey(owner, idempotency_key)

        async def attempt() -> Conversation:
            conversation = await self.get(conversation_id, owner)
            if await self.commands.recorded(request, action.fingerprint):
                return conversation
            reads: Reads | None = None
            if purpose is not None:
                read = await self.sessions.read(self.pool, [owner])
                folded = read[owner].folded
                if not consent.given(folded.state.consents if folded else {}, purpose):
                    raise ConsentRequired(
                        f"the customer has not consented to {purpose}: nothing was sent", purpose
                    )
                reads = {self.sessions.name: read}
            action.run(conversation)
            await self.repository.save(
                conversation, owner, meta, request, action.fingerprint, reads=reads
            )
            return conversation

        return await self.commands.run(owner, attempt)

    async def transcript(
        self,
        conversation_id: UUID,
        *,
        subject_id: UUID | None = None,
        before: int | None = None,
        limit: int = 200,
    ) -> tuple[Conversation, list[Envelope]]:
        """The conversation and its newest `limit` events before version `before` (all of
        them, oldest first, if there are no more): the transcript with its handoffs, each with
        who wrote it, where and when. Turns retention expired are placeholders (`expired`)."""
        conversation = await self.get(conversation_id, subject_id)
        size = min(max(limit, 1), MAX_TRANSCRIPT_PAGE)
        records = await self.repository.store.select_events(
            conversation_id,
            lte=None if before is None else before - 1,
            desc=True,
            limit=size,
        )
        envelopes = await self.repository.mapper.to_envelopes(list(reversed(records)))
        for envelope in envelopes:
            if envelope.erased:  # an expired turn stays, as a placeholder
                raise SubjectErased(envelope.subject_id)
        return conversation, envelopes

    async def deliver(
        self, subject_id: UUID, meta: EventMeta, turn: Turn, *, idempotency_key: UUID
    ) -> tuple[Conversation, bool]:
        """Thread the customer's turn (an inbound email or SMS) into their open conversation,
        or open one with it; the conversation, and whether this request opened it. A retry
        (same key) is answered with the conversation the first one went to."""
        request = IdempotencyKey(subject_id, idempotency_key)
        fingerprint = msgspec.msgpack.encode(["conversation", "deliver", *turn.fingerprint()])
        opened_id = Conversation.open_id(subject_id, idempotency_key)

        async def attempt() -> tuple[Conversation, bool]:
            recorded = await self.pool.fetchval(
                "SELECT stream_id FROM events WHERE event_id = $1", request.first
            )
            if recorded is not None and await self.commands.recorded(request, fingerprint):
                return await self.get(recorded, subject_id), recorded == opened_id
            current = await self.open_of(subject_id)
            if current is None:
                conversation = Conversation.open(subject_id, turn.medium, idempotency_key)
            else:
                conversation = await self.get(current, subject_id)
            say("customer", None, turn).run(conversation)
            await self.repository.save(conversation, subject_id, meta, request, fingerprint)
            return conversation, current is None

        return await self.commands.run(subject_id, attempt)

    async def open_of(self, subject_id: UUID) -> UUID | None:
        """The customer's most recently active conversation that is not closed (resolved or
        moved), if any (what an inbound email or SMS threads into)."""
        for view in await self.of_customer(subject_id):
            if view.status not in ("resolved", "moved"):
                return view.conversation_id
        return None
