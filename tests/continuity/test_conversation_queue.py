"""The agents' queue of conversations, an async projection: the runner, page after page and
across a page handled twice, gives what a rebuild gives; it lists the waiting ones, longest
first, and pages by cursor."""

from __future__ import annotations

from uuid import uuid4

import asyncpg
import pytest

from aggregates.conversation import Conversation
from aggregates.metadata import EventMeta
from continuity.conversation_queue import QUEUE, ConversationQueue, QueueFilter, page
from continuity.mapper import EventMapper
from continuity.rebuild import Rebuilder
from continuity.repository import IdempotencyKey, Repository
from continuity.runner import ProjectionRunner
from continuity.store import EventStore
from tests.helpers import run_to_head

pytestmark = pytest.mark.anyio


async def conversations(store: EventStore, mapper: EventMapper, count: int) -> list[Conversation]:
    """`count` conversations: open, waiting, with an agent, resolved and rated, in turn."""
    repository = Repository(store, mapper)
    made = []
    for n in range(count):
        subject = uuid4()
        conversation = Conversation.open(subject, "sms" if n % 2 else "web_chat", uuid4())
        conversation.add_turn("customer", f"question {n}", "web_chat")
        if n % 4 >= 1:
            conversation.add_turn("bot", "let me see", "web_chat", author_id="bot-1")
            conversation.request_handoff("needs a human", "bot-1")
        if n % 4 >= 2:
            conversation.accept("agent-7")
        if n % 4 == 3:
            conversation.resolve("agent", "agent-7")
            conversation.rate(4)
        meta = EventMeta("chat", "phone")
        await repository.save(conversation, subject, meta, IdempotencyKey(subject, uuid4()), b"x")
        made.append(conversation)
    return made


async def rows(pool: asyncpg.Pool) -> list[tuple[object, ...]]:
    return [tuple(r) for r in await pool.fetch(f"SELECT * FROM {QUEUE} ORDER BY conversation_id")]


async def test_the_runner_gives_what_a_rebuild_gives_even_across_pages(
    store: EventStore, mapper: EventMapper, pool: asyncpg.Pool
) -> None:
    rebuilder = Rebuilder(store, mapper)
    await rebuilder.rebuild(ConversationQueue())
    made = await conversations(store, mapper, 12)
    runner = ProjectionRunner(store, mapper, ConversationQueue(), page_size=3)
    await run_to_head(runner)
    caught_up = await rows(pool)
    assert len(caught_up) == len(made)
    by_id = {r[0]: r for r in caught_up}
    for conversation in made:
        row = by_id[conversation.id]
        assert (row[3], row[7], row[8]) == (
            conversation.status,
            conversation.turns,
            conversation.version,
        )
    async with pool.acquire() as conn, conn.transaction():
        envelopes = await mapper.to_envelopes(await store.select_notifications(0, 1000))
        await ConversationQueue().handle(conn, {QUEUE: QUEUE}, envelopes)  # the log, again
    assert await rows(pool) == caught_up, "a page met twice changes nothing"
    await rebuilder.rebuild(ConversationQueue())
    assert await rows(pool) == caught_up


async def test_the_queue_lists_the_waiting_longest_first_and_pages(
    store: EventStore, mapper: EventMapper, pool: asyncpg.Pool
) -> None:
    await Rebuilder(store, mapper).rebuild(ConversationQueue())
    made = await conversations(store, mapper, 16)
    runner = ProjectionRunner(store, mapper, ConversationQueue(), page_size=50)
    await run_to_head(runner)
    waiting = [c.id for c in made if c.status == "waiting"]
    listed = await page(pool, QueueFilter(), limit=100)
    assert [r.conversation_id for r in listed.rows] == waiting, "oldest handoff first"
    by_sms = await page(pool, QueueFilter(medium="sms"), limit=100)
    assert {r.conversation_id for r in by_sms.rows} == {
        c.id for i, c in enumerate(made) if c.status == "waiting" and i % 2
    }
    first = await page(pool, QueueFilter(), limit=2)
    assert first.next_cursor is not None
    second = await page(pool, QueueFilter(), limit=2, cursor=first.next_cursor)
    assert [r.conversation_id for r in first.rows + second.rows] == waiting[:4]
    resolved = await page(pool, QueueFilter(status="resolved"), order="newest", limit=100)
    assert [r.conversation_id for r in resolved.rows] == [
        c.id for c in reversed(made) if c.status == "resolved"
    ]
