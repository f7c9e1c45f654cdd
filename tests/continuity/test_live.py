"""The live feed: one LISTEN connection and one reader fan out new events to many streams, in
order, nothing lost or twice; a stream that falls behind, or resumes from a position, reads
what it missed from the database; a lost LISTEN connection comes back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import cast
from uuid import UUID, uuid4

import asyncpg
import pytest
from eventsourcing.domain import DomainEvent

from aggregates.cart import Cart
from aggregates.metadata import EventMeta
from continuity.erasure import shred_subject
from continuity.live import Connect, LiveFeed, LiveStream, StreamEnded
from continuity.mapper import EventMapper
from continuity.store import EventStore

pytestmark = pytest.mark.anyio

APP = EventMeta("app", "phone")
WAIT = 10.0
"""Seconds a test waits for an event it expects (never a timing assertion: a bound on hanging)."""
LISTENER = "continuity-live-test"


class Carts:
    """Writes cart events, one append per event, as a device would."""

    def __init__(self, store: EventStore, mapper: EventMapper) -> None:
        self.store = store
        self.mapper = mapper
        self.carts: dict[UUID, Cart] = {}

    async def add(self, subject: UUID, sku: str = "SKU") -> int:
        """The position of the item's event (a cart's first append opens it, the one before)."""
        return (await self.append(subject, sku))[-1]

    async def append(self, subject: UUID, sku: str = "SKU") -> list[int]:
        cart = self.carts.get(subject)
        if cart is None:
            cart = self.carts[subject] = Cart(subject_id=subject)
        version = cart.version - len(cart.pending_events)
        cart.add_item(sku, "An item", Decimal("1.00"), 1)
        key = await self.mapper.vault.key_for_writing(subject)
        events = cast(list[DomainEvent], cart.collect_events())
        rows = [EventMapper.seal_event(key, APP, e, uuid4()) for e in events]
        return await self.store.append(rows, {cart.id: version})


@pytest.fixture
def carts(store: EventStore, mapper: EventMapper) -> Carts:
    return Carts(store, mapper)


def connector(database_url: str) -> Connect:
    async def connect() -> asyncpg.Connection:
        conn: asyncpg.Connection = await asyncpg.connect(
            database_url, server_settings={"application_name": LISTENER}
        )
        return conn

    return connect


@pytest.fixture
async def feed(
    store: EventStore, mapper: EventMapper, database_url: str
) -> AsyncIterator[LiveFeed]:
    feed = LiveFeed(store, mapper, connector(database_url), retry_delay=0.05)
    await feed.open()
    yield feed
    await feed.close()


async def take(stream: LiveStream, count: int) -> list[int]:
    """The positions of the next `count` events of `stream`."""
    positions: list[int] = []
    for _ in range(count):
        envelope = await stream.next(WAIT)
        assert envelope is not None, f"only {positions} arrived"
        positions.append(envelope.position)
    return positions


async def test_a_stream_gets_its_subjects_events_in_order_and_no_others(
    feed: LiveFeed, carts: Carts
) -> None:
    ours, theirs = uuid4(), uuid4()
    async with feed.subscribe(ours) as stream:
        written = []
        for n in range(3):
            written += await carts.append(ours, f"SKU-{n}")
            await carts.append(theirs, f"SKU-{n}")
        assert await take(stream, len(written)) == written
        assert await stream.next(0.2) is None


async def test_events_arrive_in_log_order_with_their_content(feed: LiveFeed, carts: Carts) -> None:
    subject = uuid4()
    async with feed.subscribe(subject) as stream:
        first = await carts.add(subject, "A")
        second = await carts.add(subject, "B")
        envelopes = [await stream.next(WAIT) for _ in range(3)]
    assert [e.position for e in envelopes if e is not None] == [first - 1, first, second]
    items = [getattr(e.event, "sku", None) for e in envelopes if e is not None]
    assert items == [None, "A", "B"]


async def test_a_stream_resumes_after_a_position_from_the_database_then_live(
    feed: LiveFeed, carts: Carts
) -> None:
    subject = uuid4()
    positions = [await carts.add(subject, f"SKU-{n}") for n in range(4)]
    async with feed.subscribe(subject, after=positions[0]) as stream:
        assert await take(stream, 3) == positions[1:]
        later = await carts.add(subject, "later")
        assert await take(stream, 1) == [later]
        assert await stream.next(0.2) is None


async def test_a_stream_without_a_position_starts_now(feed: LiveFeed, carts: Carts) -> None:
    subject = uuid4()
    before = await carts.add(subject, "before")
    await until_position(feed, before)
    async with feed.subscribe(subject) as stream:
        start = stream.position
        after = await carts.add(subject, "after")
        assert await take(stream, 1) == [after]
    assert start < after


async def until_position(feed: LiveFeed, position: int) -> None:
    for _ in range(int(WAIT / 0.01)):
        if feed.position >= position:
            return
        await asyncio.sleep(0.01)
    raise TimeoutError(f"the feed did not reach {position}")


async def test_a_slow_stream_catches_up_from_the_database(
    store: EventStore, mapper: EventMapper, database_url: str, carts: Carts
) -> None:
    feed = LiveFeed(store, mapper, connector(database_url), queue_size=3)
    await feed.open()
    try:
        subject = uuid4()
        async with feed.subscribe(subject) as stream:
            positions = [await carts.add(subject, f"SKU-{n}") for n in range(12)]
            await until_position(feed, positions[-1])  # every event offered, none read yet
            assert stream.overflows == 1
            received = await take(stream, 13)
            assert received[1:] == positions
            assert received == sorted(set(received))
            more = await carts.add(subject, "more")
            assert await take(stream, 1) == [more]
    finally:
        await feed.close()


async def test_a_topic_stream_gets_every_subjects_events_of_its_topics(
    feed: LiveFeed, carts: Carts
) -> None:
    async with feed.subscribe(topics=[Cart.ItemAdded.__module__ + ":Cart.ItemAdded"]) as stream:
        one = await carts.add(uuid4())
        two = await carts.add(uuid4())
        assert await take(stream, 2) == [one, two]  # the carts' Opened events are not its topic


async def test_a_topic_stream_resumes_after_a_position(feed: LiveFeed, carts: Carts) -> None:
    added = Cart.ItemAdded.__module__ + ":Cart.ItemAdded"
    first = await carts.add(uuid4())
    missed = [await carts.add(uuid4()) for _ in range(3)]
    async with feed.subscribe(topics=[added], after=first) as stream:
        assert await take(stream, 3) == missed
        live = await carts.add(uuid4())
        assert await take(stream, 1) == [live]


async def test_concurrent_writers_reach_a_stream_once_each_in_log_order(
    feed: LiveFeed, carts: Carts
) -> None:
    subjects = [uuid4() for _ in range(8)]

    async def write(subject: UUID) -> list[int]:
        return [await carts.add(subject, f"SKU-{n}") for n in range(10)]

    async with feed.subscribe() as stream:
        written = await asyncio.gather(*(write(s) for s in subjects))
        expected = len(subjects) * 11  # each cart's first append also opens it
        received = await take(stream, expected)
    assert received == sorted(received)
    assert len(set(received)) == expected
    assert {p for positions in written for p in positions} <= set(received)


async def test_thousands_of_streams_share_one_connection(
    feed: LiveFeed, carts: Carts, pool: asyncpg.Pool
) -> None:
    subjects = [uuid4() for _ in range(50)]
    streams = [feed.subscribe(subjects[n % len(subjects)]) for n in range(2_000)]
    try:
        assert feed.open_streams == 2_000
        positions = {s: await carts.add(s) for s in subjects}
        for n, stream in enumerate(streams):
            assert (await take(stream, 2))[-1] == positions[subjects[n % len(subjects)]]
        listeners = await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", LISTENER
        )
        assert listeners == 1
        assert pool.get_size() <= pool.get_max_size()
    finally:
        for stream in streams:
            stream.close()
    assert feed.open_streams == 0


async def test_a_lost_listener_connection_comes_back(
    feed: LiveFeed, carts: Carts, pool: asyncpg.Pool
) -> None:
    subject = uuid4()
    async with feed.subscribe(subject) as stream:
        await pool.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            LISTENER,
        )
        written = await carts.add(subject)
        assert (await take(stream, 2))[-1] == written  # polled meanwhile, at worst
        for _ in range(int(WAIT / 0.01)):
            if feed.listening:
                break
            await asyncio.sleep(0.01)
        assert feed.listening
        again = await carts.add(subject, "again")
        assert await take(stream, 1) == [again]


async def test_closing_the_feed_ends_every_stream(
    store: EventStore, mapper: EventMapper, database_url: str
) -> None:
    feed = LiveFeed(store, mapper, connector(database_url))
    await feed.open()
    streams = [feed.subscribe(uuid4()) for _ in range(3)]
    waiting = [asyncio.create_task(s.next()) for s in streams]
    await asyncio.sleep(0)
    await feed.close()
    for task in waiting:
        with pytest.raises(StreamEnded):
            await task
    with pytest.raises(StreamEnded):
        await feed.subscribe(uuid4()).next()


async def test_an_erased_subjects_events_arrive_as_placeholders(
    feed: LiveFeed, carts: Carts, mapper: EventMapper
) -> None:
    subject = uuid4()
    first = await carts.add(subject)
    await shred_subject(carts.store, mapper.vault, subject)
    async with feed.subscribe(subject, after=0) as stream:
        envelopes = [await stream.next(WAIT) for _ in range(2)]
    assert [e.position for e in envelopes if e is not None] == [first - 1, first]
    assert all(e is not None and e.erased for e in envelopes)


async def test_erasing_a_subject_ends_their_streams(
    feed: LiveFeed, carts: Carts, mapper: EventMapper
) -> None:
    erased, kept = uuid4(), uuid4()
    async with feed.subscribe(erased) as theirs, feed.subscribe(kept) as others:
        await shred_subject(carts.store, mapper.vault, erased)
        with pytest.raises(StreamEnded):
            await theirs.next(WAIT)
        written = await carts.add(kept)
        assert (await take(others, 2))[-1] == written
