"""Bodies of the conversation routes (customer, agent and service), shown in the OpenAPI schema."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec
from eventsourcing.utils import get_topic

from aggregates.conversation import (
    MAX_ATTACHMENTS,
    MAX_REASON,
    MAX_REFERENCE,
    MAX_SUBJECT,
    MAX_TEXT,
    Attachment,
    Author,
    Conversation,
    Medium,
    PastTurn,
    Status,
)
from continuity.conversations import Turn
from continuity.inbound import InboundChannel, Message
from projections.conversation import ConversationView, TurnView
from projections.envelope import Envelope

MAX_SIZE = 2**53 - 1
Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT, description="What the turn says.")]
Reason = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_REASON,
        description="Why a human is needed, for the agent who takes it.",
    ),
]


class AttachmentBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A file by reference (a URL or a storage key): the bytes stay where they are."""

    reference: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_REFERENCE)]
    content_type: Annotated[str, msgspec.Meta(min_length=3, max_length=255, examples=["image/png"])]
    name: Annotated[str, msgspec.Meta(max_length=255)] | None = None
    size: Annotated[int, msgspec.Meta(ge=0, le=MAX_SIZE)] | None = None

    def attachment(self) -> Attachment:
        return Attachment(
            reference=self.reference, content_type=self.content_type, name=self.name, size=self.size
        )


Attachments = Annotated[list[AttachmentBody], msgspec.Meta(max_length=MAX_ATTACHMENTS)]


class TurnBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A turn: text, attachments, or both; `medium` says where it was written."""

    medium: Medium
    text: Text = ""
    attachments: Attachments = msgspec.field(default_factory=list)

    def turn(self) -> Turn:
        return Turn(self.text, self.medium, tuple(a.attachment() for a in self.attachments))


class OutboundTurnBody(TurnBody, forbid_unknown_fields=True, kw_only=True):
    """An agent's or a bot's turn; `marketing` true marks it as marketing (an offer, a
    promotion), which is refused (403 consent-required) unless the customer has consented to
    marketing."""

    marketing: bool = False


class OpenConversation(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A new conversation on `medium`, with its first turn if `text` or `attachments` is given."""

    medium: Medium
    text: Text = ""
    attachments: Attachments = msgspec.field(default_factory=list)

    def first(self) -> Turn | None:
        if not self.text and not self.attachments:
            return None
        return TurnBody(medium=self.medium, text=self.text, attachments=self.attachments).turn()


class HandoffBody(msgspec.Struct, forbid_unknown_fields=True):
    reason: Reason


class TransferBody(msgspec.Struct, forbid_unknown_fields=True):
    to_agent: Annotated[UUID, msgspec.Meta(description="The agent's id (their token's subject).")]


class RatingBody(msgspec.Struct, forbid_unknown_fields=True):
    rating: Annotated[int, msgspec.Meta(ge=1, le=5, description="1 (poor) to 5 (excellent).")]


class ConversationAnswer(msgspec.Struct):
    """A conversation as it is after the action: its status, who has it, how many turns."""

    conversation_id: UUID
    subject_id: UUID
    status: Status
    agent_id: str | None
    handoff_reason: str | None
    rating: int | None
    turns: int
    version: int

    @classmethod
    def of(cls, conversation: Conversation) -> ConversationAnswer:
        return cls(
            conversation_id=conversation.id,
            subject_id=conversation.subject_id,
            status=conversation.status,
            agent_id=conversation.agent_id,
            handoff_reason=conversation.handoff_reason,
            rating=conversation.rating,
            turns=conversation.turns,
            version=conversation.version,
        )


class TurnSummary(msgspec.Struct):
    author: Author
    author_id: str | None
    medium: Medium
    text: str
    attachments: list[Attachment]
    at: datetime

    @classmethod
    def of(cls, turn: TurnView) -> TurnSummary:
        return cls(turn.author, turn.author_id, turn.medium, turn.text, turn.attachments, turn.at)


class ConversationSummary(msgspec.Struct):
    """A conversation as the customer's session has it: its status and its last turns."""

    conversation_id: UUID
    status: Status
    medium: Medium
    agent_id: str | None
    handoff_reason: str | None
    rating: int | None
    turns: int
    last_turns: list[TurnSummary]
    version: int
    started_at: datetime
    last_activity: datetime

    @classmethod
    def of(cls, view: ConversationView) -> ConversationSummary:
        return cls(
            conversation_id=view.conversation_id,
            status=view.status,
            medium=view.medium,
            agent_id=view.agent_id,
            handoff_reason=view.handoff_reason,
            rating=view.rating,
            turns=view.turns,
            last_turns=[TurnSummary.of(t) for t in view.last_turns],
            version=view.version,
            started_at=view.started_at,
            last_activity=view.last_activity,
        )


Kind = Literal[
    "opened",
    "turn",
    "handoff_requested",
    "handoff_accepted",
    "transferred",
    "resolved",
    "rated",
    "reopened",
    "imported",
    "moved",
]
_KINDS: dict[type, Kind] = {
    Conversation.Opened: "opened",
    Conversation.TurnAdded: "turn",
    Conversation.HandoffRequested: "handoff_requested",
    Conversation.HandoffAccepted: "handoff_accepted",
    Conversation.Transferred: "transferred",
    Conversation.Resolved: "resolved",
    Conversation.Rated: "rated",
    Conversation.Reopened: "reopened",
    Conversation.Imported: "imported",
    Conversation.TurnImported: "turn",
    Conversation.MovedTo: "moved",
}
_KINDS_BY_TOPIC = {get_topic(cls): kind for cls, kind in _KINDS.items()}


class TranscriptEntry(msgspec.Struct, omit_defaults=True):
    """One event of a conversation: a turn (author, medium, text, attachments, an email's
    subject) or a change (a handoff and its reason, who accepted, a transfer, a rating), with
    when, the channel and device, and who acted."""

    version: int
    kind: Kind
    at: datetime
    channel: str
    actor_type: str
    device: str | None = None
    actor_id: str | None = None
    author: Author | None = None
    author_id: str | None = None
    medium: Medium | None = None
    text: str | None = None
    subject: str | None = None
    attachments: list[Attachment] | None = None
    reason: str | None = None
    agent_id: str | None = None
    to_agent: str | None = None
    rating: int | None = None
    moved_from: UUID | None = None
    """Imported: the guest's conversation this one was moved from at sign-in."""
    moved_to: UUID | None = None
    """Moved: the signed-in customer's conversation this one went on as."""
    expired: bool = False
    """A turn past retention: the key of its period is destroyed, so only its kind, time and
    channel remain."""

    @classmethod
    def of(cls, envelope: Envelope) -> TranscriptEntry:
        event = envelope.event
        meta = envelope.meta
        entry = cls(
            version=envelope.version,
            kind=_KINDS_BY_TOPIC[envelope.topic] if event is None else _KINDS[type(event)],
            at=envelope.recorded_at,
            channel=envelope.channel,
            actor_type=meta.actor_type if meta is not None else "system",
            device=meta.device if meta is not None else None,
            actor_id=meta.actor_id if meta is not None else None,
            expired=envelope.expired,
        )
        if isinstance(event, Conversation.Opened):
            entry.medium = event.medium
        elif isinstance(event, Conversation.TurnAdded):
            entry.author, entry.author_id, entry.medium = (
                event.author,
                event.author_id,
                event.medium,
            )
            entry.text, entry.subject = event.text, event.subject
            entry.attachments = event.attachments
        elif isinstance(event, Conversation.HandoffRequested):
            entry.reason = event.reason
        elif isinstance(event, Conversation.HandoffAccepted):
            entry.agent_id = event.agent_id
        elif isinstance(event, Conversation.Transferred):
            entry.agent_id, entry.to_agent = event.from_agent, event.to_agent
        elif isinstance(event, Conversation.Rated):
            entry.rating = event.rating
        elif isinstance(event, Conversation.Imported):
            entry.medium, entry.moved_from = event.medium, event.moved_from
            entry.reason, entry.agent_id = event.handoff_reason, event.agent_id
        elif isinstance(event, Conversation.TurnImported):
            return cls._past(envelope.version, event.turn)
        elif isinstance(event, Conversation.MovedTo):
            entry.moved_to = event.to
        return entry

    @classmethod
    def _past(cls, version: int, turn: PastTurn) -> TranscriptEntry:
        """A turn moved from a guest's conversation: when, where and by whom it was recorded
        there."""
        return cls(
            version=version,
            kind="turn",
            at=turn.at,
            channel=turn.channel,
            actor_type=turn.actor_type,
            device=turn.device,
            actor_id=turn.actor_id,
            author=turn.author,
            author_id=turn.author_id,
            medium=turn.medium,
            text=turn.text,
            subject=turn.subject,
            attachments=turn.attachments,
        )


class Transcript(msgspec.Struct):
    """A conversation and a page of its history, oldest first; `next_before` fetches the page
    before it (null: this page starts at the beginning)."""

    conversation: ConversationAnswer
    entries: list[TranscriptEntry]
    next_before: int | None

    @classmethod
    def of(cls, conversation: Conversation, envelopes: list[Envelope]) -> Transcript:
        first = envelopes[0].version if envelopes else 1
        return cls(
            ConversationAnswer.of(conversation),
            [TranscriptEntry.of(e) for e in envelopes],
            first if first > 1 else None,
        )


class InboundBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """An email or SMS as the gateway received it."""

    channel: InboundChannel
    sender: Annotated[
        str,
        msgspec.Meta(
            min_length=3,
            max_length=320,
            description="The sender's email address, or phone number in international form.",
        ),
    ]
    subject: Annotated[str, msgspec.Meta(max_length=MAX_SUBJECT)] | None = None
    text: Text = ""
    attachments: Attachments = msgspec.field(default_factory=list)

    def message(self) -> Message:
        return Message(
            self.channel,
            self.sender,
            self.text,
            self.subject,
            tuple(a.attachment() for a in self.attachments),
        )


IdentifierKind = Literal["email", "phone"]


class IdentifierBody(msgspec.Struct, forbid_unknown_fields=True):
    """An email address, or a phone number in international form (+4915112345678)."""

    kind: IdentifierKind
    value: Annotated[str, msgspec.Meta(min_length=3, max_length=320)]


class IdentifierAnswer(msgspec.Struct):
    """Stored by keyed hash only: the value itself is not kept, so it cannot be listed."""

    kind: IdentifierKind
    registered: bool
    """False: it was this customer's already."""
