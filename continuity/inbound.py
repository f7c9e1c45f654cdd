"""Inbound email and SMS: a gateway hands over a message, and it lands in its sender's open
conversation, found by the keyed hash of the address or number (`continuity.identifiers`).

An unknown sender is not an error: they get a new guest subject, their identifier is
registered to it (so their next message threads into the same conversation), and a new
conversation opens with the message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from uuid import UUID, uuid4

from aggregates.conversation import Attachment, Conversation
from aggregates.errors import InvalidState
from aggregates.metadata import EventMeta
from continuity.conversations import ConversationService, Turn
from continuity.identifiers import Identifiers, Kind

InboundChannel = Literal["email", "sms"]
_KIND: dict[InboundChannel, Kind] = {"email": "email", "sms": "phone"}


@dataclass(frozen=True)
class Message:
    channel: InboundChannel
    sender: str
    text: str
    subject: str | None = None
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True)
class Threaded:
    conversation: Conversation
    new_customer: bool
    new_conversation: bool


class InboundService:
    def __init__(self, identifiers: Identifiers, conversations: ConversationService) -> None:
        self.identifiers = identifiers
        self.conversations = conversations

    async def receive(self, message: Message, *, idempotency_key: UUID) -> Threaded:
        """Thread `message` into its sender's open conversation (see the module's docstring)."""
        kind = _KIND[message.channel]
        subject_id = await self.identifiers.find(kind, message.sender)
        new_customer = subject_id is None
        if subject_id is None:
            guest = uuid4()
            try:
                await self.identifiers.register(guest, kind, message.sender)
                subject_id = guest
            except InvalidState:  # the sender's other message made them a guest just now
                subject_id = await self.identifiers.find(kind, message.sender)
                new_customer = False
                assert subject_id is not None  # registrations are never removed here
        turn = Turn(message.text, message.channel, message.attachments, message.subject)
        meta = EventMeta(message.channel, None, "customer")
        conversation, opened = await self.conversations.deliver(
            subject_id, meta, turn, idempotency_key=idempotency_key
        )
        return Threaded(conversation, new_customer, opened)
