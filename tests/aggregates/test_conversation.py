"""The Conversation aggregate: turns by the customer, a bot and the agent who has it; the bot's
handoff queued with a reason; one agent wins the race to accept; transfer, resolve, rate,
reopen; and a long conversation loads from its snapshot like a short one."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from aggregates.conversation import MAX_MOVED_TURNS, Attachment, Conversation, PastTurn
from aggregates.errors import InvalidState, InvalidValue
from aggregates.metadata import EventMeta
from continuity import snapshots
from continuity.errors import ConcurrencyConflict
from continuity.mapper import EventMapper
from continuity.repository import IdempotencyKey, Repository
from continuity.store import EventStore

CHAT = EventMeta("chat", "laptop")


def chat() -> Conversation:
    conversation = Conversation(subject_id=uuid4(), medium="web_chat")
    conversation.add_turn("customer", "Where is my order 1182?", "web_chat")
    conversation.add_turn("bot", "Let me look.", "web_chat", author_id="orderbot")
    return conversation


def test_a_bot_hands_off_and_one_agent_takes_it_with_the_transcript_so_far() -> None:
    conversation = chat()
    with pytest.raises(InvalidState, match="not waiting"):
        conversation.accept("agent-ann")
    conversation.request_handoff("the order is not in my systems", requested_by="orderbot")
    assert (conversation.status, conversation.handoff_reason) == (
        "waiting",
        "the order is not in my systems",
    )
    conversation.add_turn("bot", "An agent will be with you shortly.", "web_chat")
    with pytest.raises(InvalidState, match="already"):
        conversation.request_handoff("again")
    conversation.accept("agent-ann")
    with pytest.raises(InvalidState, match="another agent has taken"):
        conversation.accept("agent-bob")
    with pytest.raises(InvalidState, match="taken this conversation over"):
        conversation.add_turn("bot", "Still here!", "web_chat")
    with pytest.raises(InvalidState, match="only the agent who has"):
        conversation.add_turn("agent", "Hi, Bob here.", "web_chat", author_id="agent-bob")
    conversation.add_turn("agent", "Hi, Ann here.", "web_chat", author_id="agent-ann")
    assert conversation.turns == 4


def test_transfer_resolve_rate_and_reopen() -> None:
    conversation = chat()
    conversation.request_handoff("a refund")
    conversation.accept("agent-ann")
    with pytest.raises(InvalidState):
        conversation.transfer("agent-bob", "agent-cy")
    conversation.transfer("agent-ann", "agent-bob")
    with pytest.raises(InvalidState, match="another agent"):
        conversation.resolve("agent", agent_id="agent-ann")
    with pytest.raises(InvalidState, match="rated once it is resolved"):
        conversation.rate(5)
    conversation.resolve("agent", agent_id="agent-bob")
    with pytest.raises(InvalidState, match="reopen it first"):
        conversation.add_turn("customer", "Thanks!", "email")
    with pytest.raises(InvalidValue):
        conversation.rate(6)
    conversation.rate(4)
    conversation.reopen("customer")
    assert (conversation.status, conversation.agent_id, conversation.rating) == ("open", None, None)
    conversation.add_turn("customer", "It came broken.", "email")


def test_turns_are_bounded_and_attachments_are_references() -> None:
    conversation = chat()
    photo = Attachment(reference="s3://uploads/7f3a.jpg", content_type="image/jpeg", size=48_213)
    conversation.add_turn("customer", "", "app_chat", attachments=[photo])
    with pytest.raises(InvalidValue, match="text or an attachment"):
        conversation.add_turn("customer", "  ", "app_chat")
    with pytest.raises(InvalidValue, match="type/subtype"):
        conversation.add_turn(
            "customer",
            "x",
            "app_chat",
            attachments=[Attachment(reference="k", content_type="jpeg")],
        )
    with pytest.raises(InvalidValue, match="at most"):
        conversation.add_turn("customer", "x" * 10_001, "app_chat")


@pytest.mark.anyio
async def test_two_agents_accept_at_once_one_wins_and_a_long_one_loads_from_its_snapshot(
    store: EventStore, mapper: EventMapper
) -> None:
    repository = Repository(store, mapper)
    conversation = chat()
    subject = conversation.subject_id

    async def save(aggregate: Conversation, request: bytes) -> None:
        await repository.save(aggregate, subject, CHAT, IdempotencyKey(subject, uuid4()), request)

    for n in range(2 * snapshots.EVERY):
        conversation.add_turn("customer", f"message {n}", "web_chat")
        if n % 50 == 49:
            await save(conversation, b"t")
    conversation.request_handoff("too long for the bot")
    await save(conversation, b"h")
    assert await store.pool.fetchval(
        "SELECT version FROM snapshots WHERE stream_id = $1", conversation.id
    ), "a commit past 100 events leaves a snapshot"

    ann = await repository.load(conversation.id, Conversation)
    bob = await repository.load(conversation.id, Conversation)
    assert ann is not None
    assert bob is not None
    assert (ann.status, ann.turns) == ("waiting", 2 + 2 * snapshots.EVERY)
    ann.accept("agent-ann")
    bob.accept("agent-bob")
    await save(ann, b"a")
    with pytest.raises(ConcurrencyConflict):
        await save(bob, b"b")
    again = await repository.load(conversation.id, Conversation)
    assert again is not None
    with pytest.raises(InvalidState, match="another agent has taken"):
        again.accept("agent-bob")
    assert again.agent_id == "agent-ann"


def test_a_moved_conversation_carries_its_newest_turns_and_the_original_refuses_all() -> None:
    original = chat()
    original.request_handoff("needs a human", "orderbot")
    at = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
    turns = [
        PastTurn(
            "customer", None, "web_chat", f"turn {n}", [], None, at, "web", "customer", None, None
        )
        for n in range(MAX_MOVED_TURNS + 2)
    ]
    customer = uuid4()
    moved = Conversation.imported(
        customer, original, turns, medium="web_chat", started_at=at, status_since=at
    )
    assert (moved.status, moved.handoff_reason, moved.turns) == (
        "waiting",
        "needs a human",
        MAX_MOVED_TURNS,
    )
    assert (
        moved.id
        == Conversation.imported(
            customer, original, turns, medium="web_chat", started_at=at, status_since=at
        ).id
    ), "one id per original: a second move collides on its stream"
    events = moved.collect_events()
    assert isinstance(events[0], Conversation.Imported)
    assert events[0].turns_left == 2
    assert isinstance(events[1], Conversation.TurnImported)
    assert events[1].turn.text == "turn 2", "the newest turns"
    original.move_to(moved.id, customer, 2)
    assert (original.status, original.moved_to) == ("moved", moved.id)
    refusals: list[Callable[[], None]] = [
        lambda: original.add_turn("customer", "hello?", "web_chat"),
        lambda: original.accept("agent-7"),
        lambda: original.resolve("customer"),
        lambda: original.move_to(moved.id, customer),
    ]
    for refused in refusals:
        with pytest.raises(InvalidState):
            refused()
    accepted = Conversation.imported(
        customer, original_with_agent(), [], medium="sms", started_at=at, status_since=at
    )
    assert (accepted.status, accepted.agent_id) == ("with_agent", "agent-7")
    accepted.add_turn("agent", "I have it", "sms", author_id="agent-7")


def original_with_agent() -> Conversation:
    conversation = chat()
    conversation.request_handoff("needs a human", "orderbot")
    conversation.accept("agent-7")
    return conversation
