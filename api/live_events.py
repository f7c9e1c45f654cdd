"""Live updates as Server-Sent Events: the message of one event, and the stream of a subscription.

Each message's `id` is the event's log position, so a client that reconnects with
`Last-Event-ID` resumes right after the last event it received; `event` is a stable kind
(`cart.item_added`, `application.step_completed`, `conversation.turn_added`: the aggregate and
the event class in snake case) and `data` is a `LiveEvent` in JSON. A stream opened without
`Last-Event-ID` starts at the log's position at that moment, which its first message gives as
its `id` (with no data: browsers keep it as the last event id without dispatching anything).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import datetime
from functools import cache
from typing import Any
from uuid import UUID

import msgspec
from litestar.response import ServerSentEventMessage

from aggregates.conversation import Conversation
from continuity.live import LiveFeed, StreamEnded
from projections.envelope import Envelope

RETRY_MS = 2_000
"""The reconnect delay the stream suggests to clients (`retry:`), in milliseconds."""
_NOT_FIELDS = frozenset({"originator_id", "originator_version", "timestamp", "originator_topic"})
"""What every event carries besides its own fields (sent as `stream_id`, `version`, `at`)."""
_WORD = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


class LiveEvent(msgspec.Struct, frozen=True):
    """What a message's `data` holds."""

    position: int
    stream_id: UUID
    stream: str
    """The aggregate: cart, application, conversation."""
    kind: str
    version: int
    at: datetime
    """When the event was recorded."""
    channel: str
    device: str | None
    actor_type: str
    data: dict[str, Any]
    """The event's own fields."""


def snake(name: str) -> str:
    return _WORD.sub("_", name).lower()


@cache
def kind_of(topic: str) -> tuple[str, str]:
    """(stream, kind) of a topic: `aggregates.cart:Cart.ItemAdded` is ("cart",
    "cart.item_added")."""
    qualname = topic.rpartition(":")[2]
    aggregate, _, event = qualname.rpartition(".")
    stream = snake(aggregate or topic.partition(":")[0].rpartition(".")[2])
    return stream, f"{stream}.{snake(event)}"


def message_of(envelope: Envelope) -> ServerSentEventMessage:
    """The message of a decrypted event (not an erased subject's placeholder)."""
    event, meta = envelope.event, envelope.meta
    assert event is not None
    assert meta is not None
    stream, kind = kind_of(envelope.topic)
    body = LiveEvent(
        position=envelope.position,
        stream_id=envelope.stream_id,
        stream=stream,
        kind=kind,
        version=envelope.version,
        at=envelope.recorded_at,
        channel=envelope.channel,
        device=meta.device,
        actor_type=meta.actor_type,
        data={k: v for k, v in vars(event).items() if k not in _NOT_FIELDS},
    )
    return ServerSentEventMessage(
        data=msgspec.json.encode(body).decode(), event=kind, id=envelope.position
    )


class QueueChange(msgspec.Struct, frozen=True):
    """A change to the agents' queue of conversations, with nothing personal in it (no text,
    reason or agent): which conversation, whose, its status now, and when."""

    position: int
    conversation_id: UUID
    subject_id: UUID
    status: str
    at: datetime


QUEUE_STATUS: dict[str, str] = {
    "aggregates.conversation:Conversation.HandoffRequested": "waiting",
    "aggregates.conversation:Conversation.HandoffAccepted": "with_agent",
    "aggregates.conversation:Conversation.Resolved": "resolved",
    "aggregates.conversation:Conversation.MovedTo": "moved",
}
"""The events that put a conversation in the queue or take it out, and its status after."""
QUEUE_TOPICS = (*QUEUE_STATUS, "aggregates.conversation:Conversation.Imported")
"""What the agents' queue stream follows: those, and a conversation moved from a guest at
sign-in, which comes in the status it had (its event says which)."""


def _queue_status(envelope: Envelope) -> str:
    event = envelope.event
    if isinstance(event, Conversation.Imported):
        return event.status
    return QUEUE_STATUS[envelope.topic]


def queue_message_of(envelope: Envelope) -> ServerSentEventMessage:
    """The message of a handoff event on the agents' queue stream."""
    _, kind = kind_of(envelope.topic)
    body = QueueChange(
        position=envelope.position,
        conversation_id=envelope.stream_id,
        subject_id=envelope.subject_id,
        status=_queue_status(envelope),
        at=envelope.recorded_at,
    )
    return ServerSentEventMessage(
        data=msgspec.json.encode(body).decode(), event=kind, id=envelope.position
    )


async def event_stream(
    feed: LiveFeed,
    subject_id: UUID | None,
    topics: Iterable[str] = (),
    *,
    after: int | None,
    keepalive: float,
    render: Callable[[Envelope], ServerSentEventMessage] = message_of,
) -> AsyncIterator[ServerSentEventMessage]:
    """The messages of a subscription: subscribed first, then what was missed after `after`
    (read from the database), then live events; a comment line whenever `keepalive` seconds
    pass without one. It ends when the feed stops (its last message a `retry:` hint and a
    comment saying to reconnect) or the subject is erased (a stream of topics passes over
    erased subjects' placeholders).

    The subscription is made when the response starts streaming, not when the handler runs, so
    a response that never starts leaves nothing behind; a client that disconnects cancels the
    generator, and unsubscribing is synchronous, so nothing in `finally` can be cut short."""
    stream = feed.subscribe(subject_id, topics, after=after)
    try:
        yield ServerSentEventMessage(
            data=None,
            comment="connected",
            id=stream.position if after is None else None,
            retry=RETRY_MS,
        )
        while True:
            envelope = await stream.next(keepalive)
            if envelope is None:
                yield ServerSentEventMessage(data=None, comment="keep-alive")
            elif envelope.erased:
                if subject_id is not None:
                    return  # the subject's data is gone: a reconnect is answered 410
            elif envelope.expired:
                continue  # past retention (a resume from long ago): nothing left to say
            else:
                yield render(envelope)
    except StreamEnded:
        # The server is stopping, or the log could not be read: the client should come back
        # (to this server or another) from the last id it received.
        yield ServerSentEventMessage(data=None, comment="ended: reconnect", retry=RETRY_MS)
    finally:
        stream.close()
