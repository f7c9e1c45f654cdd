"""A conversation with the business: turns by the customer, a bot or an agent on any channel,
the handoff from a bot to a human, transfer between agents, resolution and reopening.

The aggregate keeps what its rules need (who has it, whether it waits, how many turns), never
the transcript: that is in its events, which the projections fold and an agent reads whole. So
its state, and its snapshot, stay small however long the conversation gets.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal, Self
from uuid import UUID, uuid5

import msgspec
from eventsourcing.domain import Aggregate, event

from aggregates.errors import InvalidState, InvalidValue
from aggregates.restoring import restored

Medium = Literal["web_chat", "app_chat", "email", "sms", "phone_note", "store_note"]
Author = Literal["customer", "bot", "agent"]
Status = Literal["open", "waiting", "with_agent", "resolved", "moved"]
"""open: with the customer (and a bot, if any); waiting: handed off, queued for an agent;
with_agent: one agent has it; resolved; moved: recorded anew for another subject (a guest's,
for the customer who signed in), closed here."""

MAX_TEXT = 10_000
MAX_ATTACHMENTS = 10
MAX_REFERENCE = 2_048
MAX_REASON = 500
MAX_SUBJECT = 300
MAX_MOVED_TURNS = 1_000
"""Turns a moved conversation carries (the newest): one sign-in appends at most this many."""
CONVERSATION_NAMESPACE = UUID("3e7c2a91-6b0d-4f58-a1c3-9d84e2b7f605")
MOVED_NAMESPACE = UUID("c41d7e08-5a9b-4e63-b2f7-18d0a6e95c3b")
_CONTENT_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")


class Attachment(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A file by reference (a URL or a storage key) and its content type; never its bytes."""

    reference: str
    content_type: str
    name: str | None = None
    size: int | None = None


class ConversationState(msgspec.Struct, frozen=True, gc=False):
    """What a snapshot holds."""

    subject_id: UUID
    status: Status
    agent_id: str | None
    turns: int
    handoff_reason: str | None
    rating: int | None
    moved_to: UUID | None = None


class PastTurn(msgspec.Struct, frozen=True, gc=False):
    """A turn recorded earlier in another conversation, with when, where and by whom it was
    recorded there (what a moved conversation carries over, as data)."""

    author: Author
    author_id: str | None
    medium: Medium
    text: str
    attachments: list[Attachment]
    subject: str | None
    at: datetime
    channel: str
    actor_type: str
    device: str | None
    actor_id: str | None


def check_attachments(attachments: list[Attachment]) -> None:
    if len(attachments) > MAX_ATTACHMENTS:
        raise InvalidValue(f"a turn carries at most {MAX_ATTACHMENTS} attachments", "attachments")
    for n, attachment in enumerate(attachments):
        where = f"attachments[{n}]"
        if not 0 < len(attachment.reference) <= MAX_REFERENCE:
            raise InvalidValue(f"a reference is 1 to {MAX_REFERENCE} characters", where)
        if not _CONTENT_TYPE.fullmatch(attachment.content_type.lower()):
            raise InvalidValue("a content type is type/subtype, such as image/png", where)
        if attachment.size is not None and attachment.size < 0:
            raise InvalidValue("a size is zero or more bytes", where)


class Conversation(Aggregate):
    class Opened(Aggregate.Created):
        subject_id: UUID
        medium: Medium

    class Imported(Aggregate.Created):
        """A conversation moved here from another subject (a guest who signed in), in the
        status it had there and since when; its turns follow (`TurnImported`), the newest
        `MAX_MOVED_TURNS` of them: `turns_left` older ones stay in the original only."""

        subject_id: UUID
        medium: Medium
        moved_from: UUID
        status: Status
        agent_id: str | None
        handoff_reason: str | None
        started_at: datetime
        status_since: datetime
        turns_left: int

        def apply(self, aggregate: Any) -> None:
            aggregate.status = self.status
            aggregate.agent_id = self.agent_id
            aggregate.handoff_reason = self.handoff_reason

    class TurnImported(Aggregate.Event):
        turn: PastTurn

    class MovedTo(Aggregate.Event):
        """Closed: recorded anew as conversation `to` of subject `to_subject`, without its
        `turns_left` oldest turns (past `MAX_MOVED_TURNS`)."""

        to: UUID
        to_subject: UUID
        turns_left: int = 0

    class TurnAdded(Aggregate.Event):
        """Version 2: an email's subject line (None for every other turn, and every turn
        recorded before)."""

        class_version = 2
        author: Author
        author_id: str | None
        medium: Medium
        text: str
        attachments: list[Attachment]
        subject: str | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["subject"] = None

    class HandoffRequested(Aggregate.Event):
        reason: str
        requested_by: str | None

    class HandoffAccepted(Aggregate.Event):
        agent_id: str

    class Transferred(Aggregate.Event):
        from_agent: str
        to_agent: str

    class Resolved(Aggregate.Event):
        by: Author

    class Rated(Aggregate.Event):
        rating: int

    class Reopened(Aggregate.Event):
        by: Author

    @event(Opened)
    def __init__(self, subject_id: UUID, medium: Medium) -> None:
        self.subject_id = subject_id
        self.status: Status = "open"
        self.agent_id: str | None = None
        self.turns = 0
        self.handoff_reason: str | None = None
        self.rating: int | None = None
        self.moved_to: UUID | None = None

    @classmethod
    def open(cls, subject_id: UUID, medium: Medium, key: UUID) -> Self:
        """The conversation opened by the request with idempotency key `key`: a retried open
        opens the same one, never a second."""
        return cls._create(
            cls.Opened, id=cls.open_id(subject_id, key), subject_id=subject_id, medium=medium
        )

    @staticmethod
    def open_id(subject_id: UUID, key: UUID) -> UUID:
        return uuid5(CONVERSATION_NAMESPACE, f"{subject_id}/{key}")

    @classmethod
    def imported(
        cls,
        subject_id: UUID,
        source: Conversation,
        turns: Sequence[PastTurn],
        *,
        medium: Medium,
        started_at: datetime,
        status_since: datetime,
    ) -> Self:
        """`source`, not resolved (another subject's: a guest's who signed in), recorded anew
        for `subject_id`, in the original's medium, since its start and status: with the newest
        `MAX_MOVED_TURNS` of `turns` (its transcript, oldest first). One id per original, so
        moving it twice opens the same stream."""
        source._check_not_resolved()
        kept = list(turns)[-MAX_MOVED_TURNS:]
        conversation = cls._create(
            cls.Imported,
            id=cls.open_id(subject_id, uuid5(MOVED_NAMESPACE, str(source.id))),
            subject_id=subject_id,
            medium=medium,
            moved_from=source.id,
            status=source.status,
            agent_id=source.agent_id,
            handoff_reason=source.handoff_reason,
            started_at=started_at,
            status_since=status_since,
            turns_left=len(turns) - len(kept),
        )
        for turn in kept:
            conversation._turn_imported(turn)
        return conversation

    @event(TurnImported)
    def _turn_imported(self, turn: PastTurn) -> None:
        self.turns += 1

    # -- snapshots ----------------------------------------------------------------------------

    @classmethod
    def snapshot_type(cls) -> type[ConversationState]:
        return ConversationState

    def snapshot_state(self) -> ConversationState:
        return ConversationState(
            self.subject_id,
            self.status,
            self.agent_id,
            self.turns,
            self.handoff_reason,
            self.rating,
        )

    @classmethod
    def restore(cls, stream_id: UUID, version: int, state: ConversationState) -> Self:
        return restored(cls, stream_id, version, **msgspec.structs.asdict(state))

    # -- commands -----------------------------------------------------------------------------

    def add_turn(
        self,
        author: Author,
        text: str,
        medium: Medium,
        *,
        author_id: str | None = None,
        attachments: list[Attachment] | None = None,
        subject: str | None = None,
    ) -> None:
        """A turn by the customer (any time it is not resolved), a bot (before an agent has
        it), or the agent who has it; an email's turn may carry its subject line."""
        self._check_not_resolved()
        if subject is not None and len(subject) > MAX_SUBJECT:
            raise InvalidValue(f"a subject is at most {MAX_SUBJECT} characters", field="subject")
        if not text.strip() and not attachments:
            raise InvalidValue("a turn has text or an attachment", field="text")
        if len(text) > MAX_TEXT:
            raise InvalidValue(f"a turn's text is at most {MAX_TEXT} characters", field="text")
        check_attachments(attachments or [])
        if author == "bot" and self.status == "with_agent":
            raise InvalidState("an agent has taken this conversation over from the bot")
        if author == "agent" and (self.status != "with_agent" or self.agent_id != author_id):
            raise InvalidState("only the agent who has the conversation replies in it")
        self._turn_added(author, author_id, medium, text, list(attachments or []), subject)

    @event(TurnAdded)
    def _turn_added(
        self,
        author: Author,
        author_id: str | None,
        medium: Medium,
        text: str,
        attachments: list[Attachment],
        subject: str | None,
    ) -> None:
        self.turns += 1

    def request_handoff(self, reason: str, requested_by: str | None = None) -> None:
        """Queue the conversation for a human agent, with why (the bot's or the customer's)."""
        self._check_not_resolved()
        if self.status != "open":
            raise InvalidState(f"the conversation is {self._said()} already")
        if not 0 < len(reason.strip()) <= MAX_REASON:
            raise InvalidValue(f"a reason is 1 to {MAX_REASON} characters", field="reason")
        self._handoff_requested(reason, requested_by)

    @event(HandoffRequested)
    def _handoff_requested(self, reason: str, requested_by: str | None) -> None:
        self.status = "waiting"
        self.handoff_reason = reason

    def accept(self, agent_id: str) -> None:
        """One agent takes the waiting conversation; whoever comes second is refused."""
        if self.status == "with_agent":
            raise InvalidState("another agent has taken this conversation already")
        if self.status != "waiting":
            raise InvalidState(f"the conversation is {self._said()}, not waiting for an agent")
        self._handoff_accepted(agent_id)

    @event(HandoffAccepted)
    def _handoff_accepted(self, agent_id: str) -> None:
        self.status = "with_agent"
        self.agent_id = agent_id

    def transfer(self, from_agent: str, to_agent: str) -> None:
        if self.status != "with_agent" or self.agent_id != from_agent:
            raise InvalidState("only the agent who has the conversation transfers it")
        if to_agent == from_agent:
            raise InvalidValue("transfer to another agent", field="to_agent")
        self._transferred(from_agent, to_agent)

    @event(Transferred)
    def _transferred(self, from_agent: str, to_agent: str) -> None:
        self.agent_id = to_agent

    def resolve(self, by: Author, agent_id: str | None = None) -> None:
        self._check_not_resolved()
        if by == "agent" and self.status == "with_agent" and self.agent_id != agent_id:
            raise InvalidState("another agent has this conversation")
        self._resolved(by)

    @event(Resolved)
    def _resolved(self, by: Author) -> None:
        self.status = "resolved"
        self.agent_id = None

    def rate(self, rating: int) -> None:
        """The customer's satisfaction, 1 to 5, once the conversation is resolved."""
        if self.status != "resolved":
            raise InvalidState("a conversation is rated once it is resolved")
        if not 1 <= rating <= 5:
            raise InvalidValue("a rating is 1 to 5", field="rating")
        self._rated(rating)

    @event(Rated)
    def _rated(self, rating: int) -> None:
        self.rating = rating

    def reopen(self, by: Author) -> None:
        if self.status != "resolved":
            raise InvalidState("only a resolved conversation is reopened")
        self._reopened(by)

    @event(Reopened)
    def _reopened(self, by: Author) -> None:
        self.status = "open"
        self.handoff_reason = None
        self.rating = None

    def move_to(self, to: UUID, to_subject: UUID, turns_left: int = 0) -> None:
        """Close the conversation: it was recorded anew as `to` (see `imported`)."""
        self._check_not_resolved()
        self._moved_to(to, to_subject, turns_left)

    @event(MovedTo)
    def _moved_to(self, to: UUID, to_subject: UUID, turns_left: int) -> None:
        self.status = "moved"
        self.agent_id = None
        self.moved_to = to

    def pass_expired(self, version: int, at: datetime) -> None:
        """Count a turn whose content retention made unreadable (the key of its period is
        destroyed): only turns are sealed so (`continuity.mapper.KEY_CLASSES`), and the state
        counts them, never holds them, so the conversation loads as it was."""
        self.turns += 1
        self._version = version
        self._modified_on = at

    def _check_not_resolved(self) -> None:
        if self.status == "moved":
            raise InvalidState("the conversation moved to the account that signed in")
        if self.status == "resolved":
            raise InvalidState("the conversation is resolved: reopen it first")

    def _said(self) -> str:
        return self.status.replace("_", " ")
