"""The event store against real PostgreSQL: versions, idempotency, ordering, append-only."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from uuid import UUID, uuid4

import asyncpg
import pytest

from continuity.db import Conn, close_pool, create_pool
from continuity.errors import ConcurrencyConflict, EventIdReused
from continuity.store import EventStore, NewEvent

pytestmark = pytest.mark.anyio


def new_event(
    stream_id: UUID, version: int, *, event_id: UUID | None = None, digest: bytes = b"d" * 16
) -> NewEvent:
    return NewEvent(
        stream_id=stream_id,
        version=version,
        event_id=event_id or uuid4(),
        subject_id=stream_id,
        topic="test:Event",
        channel="web",
        recorded_at=datetime.now(UTC),
        key_version=1,
        digest=digest,
        payload=os.urandom(24),
    )


async def test_append_and_read_a_stream(store: EventStore) -> None:
    stream = uuid4()
    positions = await store.append([new_event(stream, 1), new_event(stream, 2)], {stream: 0})
    assert len(positions) == 2
    assert positions[0] < positions[1]
    events = await store.select_events(stream)
    assert [e.version for e in events] == [1, 2]
    assert [e.position for e in events] == positions
    assert [e.version for e in await store.select_events(stream, gt=1)] == [2]
    assert [e.version for e in await store.select_events(stream, desc=True, limit=1)] == [2]
    assert await store.stream_version(stream) == 2


async def test_stale_expected_version_is_a_conflict_naming_the_stream(store: EventStore) -> None:
    stream = uuid4()
    await store.append([new_event(stream, 1), new_event(stream, 2)], {stream: 0})
    with pytest.raises(ConcurrencyConflict) as behind:
        await store.append([new_event(stream, 2)], {stream: 1})
    assert (behind.value.stream_id, behind.value.expected, behind.value.actual) == (stream, 1, 2)
    with pytest.raises(ConcurrencyConflict) as ahead:
        await store.append([new_event(stream, 6)], {stream: 5})
    assert (ahead.value.expected, ahead.value.actual) == (5, 2)
    with pytest.raises(ConcurrencyConflict):
        await store.append([new_event(stream, 1)], {stream: 0})
    assert await store.stream_version(stream) == 2


async def test_a_batch_must_follow_its_expected_versions(store: EventStore) -> None:
    stream = uuid4()
    await store.append([new_event(stream, 1), new_event(stream, 2)], {stream: 0})
    with pytest.raises(ValueError, match="does not follow"):
        await store.append([new_event(stream, 6)], {stream: 1})
    with pytest.raises(ValueError, match="does not follow"):
        await store.append([new_event(stream, 3), new_event(stream, 5)], {stream: 2})
    with pytest.raises(ConcurrencyConflict):
        await store.append([new_event(stream, 2)], {stream: 1})
    assert await store.stream_version(stream) == 2


async def hold_event_id(
    store: EventStore, release: asyncio.Event
) -> tuple[NewEvent, asyncio.Task[list[int]]]:
    """An open transaction that has appended an event: a second append reusing its event_id
    waits on the unique index inside the critical section until this one ends."""
    taken = new_event(uuid4(), 1)
    inserted = asyncio.Event()

    async def hold_open(conn: Conn, positions: list[int]) -> None:
        inserted.set()
        await release.wait()

    holder = asyncio.create_task(store.append([taken], project=hold_open))
    await inserted.wait()
    return new_event(uuid4(), 1, event_id=taken.event_id), holder


async def test_an_append_cancelled_by_the_server_does_not_block_later_ones(
    store: EventStore, database_url: str, schema: str
) -> None:
    release = asyncio.Event()
    clash, holder = await hold_event_id(store, release)
    impatient = await create_pool(
        database_url, schema, min_size=1, max_size=1, settings={"statement_timeout": "200"}
    )
    try:
        with pytest.raises(asyncpg.QueryCanceledError):
            await EventStore(impatient, schema).append([clash])
        release.set()
        await holder
        other = uuid4()
        await asyncio.wait_for(store.append([new_event(other, 1)], {other: 0}), 5)
        again = uuid4()
        await asyncio.wait_for(
            EventStore(impatient, schema).append([new_event(again, 1)], {again: 0}), 5
        )
    finally:
        await close_pool(impatient)


async def test_an_append_cancelled_by_the_client_does_not_block_later_ones(
    store: EventStore,
) -> None:
    release = asyncio.Event()
    clash, holder = await hold_event_id(store, release)
    waiting = asyncio.create_task(store.append([clash]))
    await asyncio.sleep(0.2)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    other = uuid4()
    await asyncio.wait_for(store.append([new_event(other, 1)], {other: 0}), 5)
    release.set()
    await holder


async def test_a_conflict_on_one_stream_does_not_stall_other_streams(
    store: EventStore, pool: asyncpg.Pool
) -> None:
    """While a writer to stream S holds its transaction open, a second writer to S waits for
    it, but writers to other streams go straight through."""
    stream = uuid4()
    inserted, release = asyncio.Event(), asyncio.Event()

    async def hold_open(conn: Conn, positions: list[int]) -> None:
        inserted.set()
        await release.wait()

    first = asyncio.create_task(
        store.append([new_event(stream, 1)], {stream: 0}, project=hold_open)
    )
    await inserted.wait()
    second = asyncio.create_task(store.append([new_event(stream, 1)], {stream: 0}))
    await asyncio.sleep(0.1)
    other = uuid4()
    await asyncio.wait_for(store.append([new_event(other, 1)], {other: 0}), 2)
    assert not second.done()
    release.set()
    await first
    with pytest.raises(ConcurrencyConflict):
        await second


async def test_a_batch_over_two_streams_is_atomic(store: EventStore) -> None:
    first, second = uuid4(), uuid4()
    await store.append([new_event(second, 1)], {second: 0})
    with pytest.raises(ConcurrencyConflict) as conflict:
        await store.append([new_event(first, 1), new_event(second, 1)], {first: 0, second: 0})
    assert conflict.value.stream_id == second
    assert await store.select_events(first) == []


async def test_retrying_a_batch_returns_the_original_positions(store: EventStore) -> None:
    stream = uuid4()
    batch = [new_event(stream, 1), new_event(stream, 2)]
    positions = await store.append(batch, {stream: 0})
    assert await store.append(batch, {stream: 0}) == positions
    assert await store.append(batch) == positions
    assert len(await store.select_events(stream)) == 2


async def test_reusing_an_event_id_for_other_content_is_an_error(store: EventStore) -> None:
    stream = uuid4()
    event = new_event(stream, 1)
    await store.append([event], {stream: 0})
    other = new_event(stream, 2, event_id=event.event_id, digest=b"x" * 16)
    with pytest.raises(EventIdReused) as reused:
        await store.append([other], {stream: 1})
    assert reused.value.event_id == event.event_id
    elsewhere = new_event(uuid4(), 1, event_id=event.event_id)
    with pytest.raises(EventIdReused):
        await store.append([elsewhere])
    partly = [new_event(stream, 2), new_event(stream, 3, event_id=event.event_id)]
    with pytest.raises(EventIdReused):
        await store.append(partly, {stream: 1})
    assert len(await store.select_events(stream)) == 1


async def test_the_database_refuses_update_delete_and_truncate(
    store: EventStore, pool: asyncpg.Pool
) -> None:
    stream = uuid4()
    await store.append([new_event(stream, 1)], {stream: 0})
    for sql in (
        "UPDATE events SET channel = 'app'",
        "DELETE FROM events",
        "TRUNCATE events",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await pool.execute(sql)
    assert len(await store.select_events(stream)) == 1


async def test_global_log_pages_in_position_order(store: EventStore) -> None:
    streams = [uuid4() for _ in range(5)]
    written = []
    for stream in streams:
        written += await store.append([new_event(stream, 1), new_event(stream, 2)], {stream: 0})
    first = await store.select_notifications(None, 4)
    rest = await store.select_notifications(first[-1].position, 100, inclusive_of_start=False)
    assert [e.position for e in first + rest] == written
    assert await store.max_notification_id() == written[-1]


async def test_concurrent_writers_and_a_subscriber_see_every_event_once_in_order(
    store: EventStore,
) -> None:
    writers, appends = 8, 200
    expected_total = writers * appends
    seen: list[int] = []

    async def follow() -> None:
        async with store.subscribe(gt=0) as subscription:
            async for event in subscription:
                seen.append(event.position)
                if len(seen) == expected_total:
                    return

    async def write(worker: int) -> None:
        stream = uuid4()
        for version in range(1, appends + 1):
            await store.append([new_event(stream, version)], {stream: version - 1})

    follower = asyncio.create_task(follow())
    await asyncio.gather(*(write(w) for w in range(writers)))
    await asyncio.wait_for(follower, 60)
    all_positions = [e.position for e in await store.select_notifications(None, 10_000)]
    assert len(all_positions) == expected_total
    assert seen == all_positions
    assert seen == sorted(seen)
    assert len(set(seen)) == expected_total


async def test_a_reader_waits_for_an_earlier_position_that_commits_late(
    store: EventStore,
) -> None:
    """Transaction A takes a position and stays open; B takes a later one and commits. A reader
    must not see B before A commits, or a subscriber that moved past B would never see A."""
    before = await store.max_notification_id() or 0
    a_inserted, release_a = asyncio.Event(), asyncio.Event()
    first, second = uuid4(), uuid4()

    async def hold_open(conn: Conn, positions: list[int]) -> None:
        a_inserted.set()
        await release_a.wait()

    slow = asyncio.create_task(store.append([new_event(first, 1)], {first: 0}, project=hold_open))
    await a_inserted.wait()
    [late] = await store.append([new_event(second, 1)], {second: 0})
    assert await store.select_notifications(before, 10, inclusive_of_start=False) == []

    received: list[int] = []

    async def follow() -> None:
        async with store.subscribe(gt=before) as subscription:
            async for event in subscription:
                received.append(event.position)
                if len(received) == 2:
                    return

    follower = asyncio.create_task(follow())
    await asyncio.sleep(0.2)
    assert received == []
    release_a.set()
    [early] = await slow
    await asyncio.wait_for(follower, 10)
    assert early < late
    assert received == [early, late]
