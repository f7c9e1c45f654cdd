"""The conversations part of the session view: each of the customer's conversations with its
status, who has it, and its last turns, so any device (and the agent who picks it up) resumes
it mid-sentence. The whole transcript stays in the log, read by the agent's routes."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec

from aggregates.conversation import Attachment, Author, Conversation, Medium, Status
from projections.envelope import Envelope
from projections.recent import kept

LAST_TURNS = 20
"""Turns a session keeps of each conversation."""
MAX_CONVERSATIONS = 20
"""Conversations a session keeps: every one not resolved, then the most recently active."""


class TurnView(msgspec.Struct, frozen=True, gc=False):
    author: Author
    author_id: str | None
    medium: Medium
    text: str
    attachments: list[Attachment]
    at: datetime


class ConversationView(msgspec.Struct, frozen=True, gc=False):
    conversation_id: UUID
    status: Status
    medium: Medium
    agent_id: str | None
    handoff_reason: str | None
    rating: int | None
    turns: int
    last_turns: list[TurnView]
    version: int
    started_at: datetime
    last_activity: datetime
    moved_from: UUID | None = None
    """The original, another subject's (a guest's), this one was recorded anew from."""
    moved_to: UUID | None = None
    """Moved: the conversation it was recorded anew as, for the customer who signed in."""


def apply(views: list[ConversationView], envelope: Envelope) -> list[ConversationView]:
    """Fold one conversation event into the customer's list (the most recently active first)."""
    event = envelope.event
    if isinstance(event, Conversation.Opened):
        opened = ConversationView(
            conversation_id=envelope.stream_id,
            status="open",
            medium=event.medium,
            agent_id=None,
            handoff_reason=None,
            rating=None,
            turns=0,
            last_turns=[],
            version=envelope.version,
            started_at=envelope.recorded_at,
            last_activity=envelope.recorded_at,
        )
        return _kept([opened, *views])
    if isinstance(event, Conversation.Imported):
        imported = ConversationView(
            conversation_id=envelope.stream_id,
            status=event.status,
            medium=event.medium,
            agent_id=event.agent_id,
            handoff_reason=event.handoff_reason,
            rating=None,
            turns=0,
            last_turns=[],
            version=envelope.version,
            started_at=event.started_at,
            last_activity=envelope.recorded_at,
            moved_from=event.moved_from,
        )
        return _kept([imported, *views])
    found = next((v for v in views if v.conversation_id == envelope.stream_id), None)
    if found is None:
        return views
    return _kept([_changed(found, envelope), *(v for v in views if v is not found)])


def _changed(view: ConversationView, envelope: Envelope) -> ConversationView:
    event = envelope.event
    changes: dict[str, object] = {}
    if isinstance(event, Conversation.TurnAdded):
        turn = TurnView(
            event.author,
            event.author_id,
            event.medium,
            event.text,
            event.attachments,
            envelope.recorded_at,
        )
        changes = _with_turn(view, turn)
    elif isinstance(event, Conversation.TurnImported):
        past = event.turn
        turn = TurnView(
            past.author, past.author_id, past.medium, past.text, past.attachments, past.at
        )
        changes = _with_turn(view, turn)
    elif isinstance(event, Conversation.HandoffRequested):
        changes = {"status": "waiting", "handoff_reason": event.reason}
    elif isinstance(event, Conversation.HandoffAccepted):
        changes = {"status": "with_agent", "agent_id": event.agent_id}
    elif isinstance(event, Conversation.Transferred):
        changes = {"agent_id": event.to_agent}
    elif isinstance(event, Conversation.Resolved):
        changes = {"status": "resolved", "agent_id": None}
    elif isinstance(event, Conversation.Rated):
        changes = {"rating": event.rating}
    elif isinstance(event, Conversation.Reopened):
        changes = {"status": "open", "handoff_reason": None, "rating": None}
    elif isinstance(event, Conversation.MovedTo):
        changes = {"status": "moved", "agent_id": None, "moved_to": event.to}
    return msgspec.structs.replace(
        view, version=envelope.version, last_activity=envelope.recorded_at, **changes
    )


def _with_turn(view: ConversationView, turn: TurnView) -> dict[str, object]:
    return {"turns": view.turns + 1, "last_turns": [*view.last_turns, turn][-LAST_TURNS:]}


def _kept(views: list[ConversationView]) -> list[ConversationView]:
    return kept(
        views,
        MAX_CONVERSATIONS,
        finished=lambda v: v.status in ("resolved", "moved"),
        ident=lambda v: v.conversation_id,
    )
