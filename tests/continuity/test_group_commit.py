"""Group commit: concurrent appends in one database call and one commit, each answered on its
own, after the commit; one request's refusal never fails another's."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from decimal import Decimal
from typing import cast
from uuid import uuid4

import asyncpg
import msgspec
import pytest
from eventsourcing.domain import DomainEvent

from aggregates.cart import Cart
from aggregates.metadata import EventMeta
from continuity.erasure import shred_subject
from continuity.errors import ConcurrencyConflict, DuplicateEvent, SubjectErased, ViewMoved
from continuity.group_commit import (
    _SQL,
    GroupCommitter,
    SnapshotWrite,
    ViewWrite,
    _arguments,
    _Request,
)
from continuity.mapper import EventMapper
from continuity.store import EventStore, NewEvent

pytestmark = pytest.mark.anyio

META = EventMeta("web", "laptop")


async def rows_of(mapper: EventMapper, cart: Cart) -> list[NewEvent]:
    key = await mapper.vault.key_for_writing(cart.subject_id)
    events = cast(list[DomainEvent], cart.collect_events())
    return [EventMapper.seal_event(key, META, event, uuid4()) for event in events]


async def new_cart(mapper: EventMapper, sku: str = "MUG-1") -> tuple[Cart, list[NewEvent]]:
    cart = Cart(subject_id=uuid4())
    cart.add_item(sku, "An item", Decimal("2.50"), 1)
    return cart, await rows_of(mapper, cart)


async def stored(pool: asyncpg.Pool, rows: Sequence[NewEvent]) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM events WHERE event_id = ANY($1::uuid[])", [r.event_id for r in rows]
    )
    return count


class Blocked:
    """A committer with one group in flight, held inside the database on a stream lock that
    another connection holds: whatever is committed meanwhile waits, and leaves as one group
    once `release` lets the first one through."""

    def __init__(self, store: EventStore, mapper: EventMapper) -> None:
        self.store = store
        self.mapper = mapper
        self.committer = GroupCommitter(store.pool, max_in_flight=1)
        self.holder: asyncpg.pool.PoolConnectionProxy | None = None

    async def __aenter__(self) -> Blocked:
        cart, rows = await new_cart(self.mapper)
        self.holder = await self.store.pool.acquire()
        await self.holder.execute("SELECT pg_advisory_lock(1937011301, hashtext($1))", str(cart.id))
        self.first = asyncio.create_task(self.committer.commit(rows, {cart.id: 0}))
        while self.committer._in_flight == 0:  # noqa: ASYNC110 - until it has left
            await asyncio.sleep(0.001)
        return self

    async def release(self) -> None:
        if self.holder is not None:
            await self.holder.execute("SELECT pg_advisory_unlock_all()")
            await self.store.pool.release(self.holder)
            self.holder = None
            await self.first

    async def __aexit__(self, *exc: object) -> None:
        await self.release()


async def test_concurrent_appends_share_commits_and_each_gets_its_own_positions(
    store: EventStore, mapper: EventMapper
) -> None:
    carts = [await new_cart(mapper) for _ in range(40)]
    positions = await asyncio.gather(*(store.append(rows, {cart.id: 0}) for cart, rows in carts))
    assert store.group.groups < 40
    flat = [p for each in positions for p in each]
    assert len(set(flat)) == len(flat) == sum(len(rows) for _, rows in carts)
    for (cart, _), mine in zip(carts, positions, strict=True):
        found = await store.pool.fetch(
            "SELECT position FROM events WHERE stream_id = $1 ORDER BY version", cart.id
        )
        assert [r["position"] for r in found] == mine
    notified = await store.select_notifications(0, 1000)
    assert [e.position for e in notified] == sorted(flat)


async def test_a_refused_request_fails_alone_in_its_group(
    store: EventStore, mapper: EventMapper
) -> None:
    good, good_rows = await new_cart(mapper)
    stale, stale_rows = await new_cart(mapper)
    await store.append(stale_rows, {stale.id: 0})
    stale.add_item("TEA-7", "Tea", Decimal("4.20"), 1)
    late_rows = await rows_of(mapper, stale)
    erased, erased_rows = await new_cart(mapper)
    await shred_subject(store, mapper.vault, erased.subject_id)
    reused, reused_rows = await new_cart(mapper)
    await store.append(reused_rows, {reused.id: 0})
    again = [msgspec.structs.replace(reused_rows[0], stream_id=uuid4())]
    async with Blocked(store, mapper) as blocked:
        waiting = [
            asyncio.ensure_future(blocked.committer.commit(rows, expected))
            for rows, expected in [
                (good_rows, {good.id: 0}),
                (late_rows, {stale.id: 0}),
                (erased_rows, {erased.id: 0}),
                (again, {}),
            ]
        ]
        await asyncio.sleep(0.05)
        await blocked.release()
        results = await asyncio.gather(*waiting, return_exceptions=True)
    assert blocked.committer.groups == 2, "the four waited and left together"
    assert isinstance(results[0], list)
    assert await stored(store.pool, good_rows) == 2
    assert isinstance(results[1], ConcurrencyConflict)
    assert (results[1].expected, results[1].actual) == (0, 2)
    assert isinstance(results[2], SubjectErased)
    assert isinstance(results[3], DuplicateEvent)
    assert await stored(store.pool, late_rows) == 0
    assert await stored(store.pool, erased_rows) == 0


async def test_a_bad_event_fails_its_own_request_only(
    store: EventStore, mapper: EventMapper
) -> None:
    """A group the database refuses whole is committed again one request at a time."""
    good, good_rows = await new_cart(mapper)
    _, bad_rows = await new_cart(mapper)
    broken = [msgspec.structs.replace(bad_rows[0], version=-1)]
    async with Blocked(store, mapper) as blocked:
        waiting = [
            asyncio.ensure_future(blocked.committer.commit(good_rows, {good.id: 0})),
            asyncio.ensure_future(blocked.committer.commit(broken, {})),
        ]
        await asyncio.sleep(0.05)
        await blocked.release()
        results = await asyncio.gather(*waiting, return_exceptions=True)
    assert isinstance(results[0], list)
    assert isinstance(results[1], asyncpg.CheckViolationError)
    assert await stored(store.pool, good_rows) == 2
    assert await stored(store.pool, broken) == 0


async def test_nothing_is_answered_before_its_commit(
    store: EventStore, mapper: EventMapper
) -> None:
    cart, rows = await new_cart(mapper)
    async with Blocked(store, mapper) as blocked:
        waiting = asyncio.ensure_future(blocked.committer.commit(rows, {cart.id: 0}))
        await asyncio.sleep(0.2)
        assert not blocked.first.done()
        assert not waiting.done()
        assert await stored(store.pool, rows) == 0
        await blocked.release()
        await waiting
        async with store.pool.acquire() as other:  # another session sees it: committed
            assert await other.fetchval(
                "SELECT count(*) FROM events WHERE stream_id = $1", cart.id
            ) == len(rows)


async def test_two_requests_on_one_stream_never_share_a_group(
    store: EventStore, mapper: EventMapper
) -> None:
    cart, rows = await new_cart(mapper)
    cart.add_item("TEA-7", "Tea", Decimal("4.20"), 1)
    more = await rows_of(mapper, cart)
    async with Blocked(store, mapper) as blocked:
        waiting = [
            asyncio.ensure_future(blocked.committer.commit(rows, {cart.id: 0})),
            asyncio.ensure_future(blocked.committer.commit(more, {cart.id: 2})),
        ]
        await asyncio.sleep(0.05)
        await blocked.release()
        first, second = await asyncio.gather(*waiting)
    assert blocked.committer.groups == 3
    assert max(first) < min(second)


async def test_a_view_row_changed_since_it_was_read_refuses_the_append(
    store: EventStore, mapper: EventMapper
) -> None:
    cart, rows = await new_cart(mapper)
    subject = cart.subject_id
    await store.pool.execute(
        "INSERT INTO session_views (subject_id, key_version, position, body)"
        " VALUES ($1, 1, 0, '\\x00')",
        subject,
    )
    revision = await store.pool.fetchval(
        "SELECT xmin::text::bigint FROM session_views WHERE subject_id = $1", subject
    )
    await store.pool.execute("UPDATE session_views SET position = 1 WHERE subject_id = $1", subject)
    write = ViewWrite("session_views", subject, revision, 1, b"\x01")
    with pytest.raises(ViewMoved):
        await store.append(rows, {cart.id: 0}, views=[write])
    assert await stored(store.pool, rows) == 0
    missing = ViewWrite("session_views", subject, None, 1, b"\x01")  # "there was no row"
    with pytest.raises(ViewMoved):
        await store.append(rows, {cart.id: 0}, views=[missing])
    current = await store.pool.fetchval(
        "SELECT xmin::text::bigint FROM session_views WHERE subject_id = $1", subject
    )
    fresh = ViewWrite("session_views", subject, current, 1, b"\x02")
    positions = await store.append(rows, {cart.id: 0}, views=[fresh])
    row = await store.pool.fetchrow(
        "SELECT position, body FROM session_views WHERE subject_id = $1", subject
    )
    assert row is not None
    assert (row["position"], row["body"]) == (max(positions), b"\x02")


async def test_a_group_reads_the_log_and_the_views_by_their_indexes_only(
    store: EventStore, mapper: EventMapper
) -> None:
    """No check of append_group scans a table, whatever the planner believes of its size: a
    log the statistics have not caught up with yet must not cost a scan of itself per append."""
    for _ in range(30):
        cart, rows = await new_cart(mapper)
        await store.append(rows, {cart.id: 0})
    gone, gone_rows = await new_cart(mapper)
    await store.append(gone_rows, {gone.id: 0})
    await shred_subject(store, mapper.vault, gone.subject_id)
    cart, rows = await new_cart(mapper)
    await store.pool.execute(
        "INSERT INTO session_views (subject_id, key_version, position, body)"
        " VALUES ($1, 1, 0, '\\x00')",
        cart.subject_id,
    )
    revision = await store.pool.fetchval(
        "SELECT xmin::text::bigint FROM session_views WHERE subject_id = $1", cart.subject_id
    )
    other, other_rows = await new_cart(mapper)
    loop = asyncio.get_running_loop()
    group = [
        _Request(
            rows,
            {cart.id: 0},
            [ViewWrite("session_views", cart.subject_id, revision, 1, b"\x01")],
            [SnapshotWrite(cart.id, cart.subject_id, 1, "f", 1, b"\x02")],
            loop.create_future(),
        ),
        _Request(other_rows, {other.id: 0}, [], [], loop.create_future()),
    ]
    scans = (
        "SELECT relname, seq_scan FROM pg_stat_xact_user_tables WHERE schemaname = current_schema()"
    )
    async with store.pool.acquire() as conn, conn.transaction():
        # The counts not yet flushed, of this connection's earlier work too.
        before = {r["relname"]: r["seq_scan"] for r in await conn.fetch(scans)}
        (row,) = await conn.fetch(_SQL, *_arguments(group))
        assert list(row["outcomes"]) == [None, None]
        after = {r["relname"]: r["seq_scan"] for r in await conn.fetch(scans)}
    assert {t: n - before.get(t, 0) for t, n in after.items() if n != before.get(t, 0)} == {}


async def test_requests_made_ready_together_leave_together_shared_among_the_slots(
    store: EventStore, mapper: EventMapper
) -> None:
    """Sixteen appends made in one turn of the event loop make two groups of eight (two slots):
    none leaves alone ahead of the others, and both slots are used."""
    committer = GroupCommitter(store.pool, max_in_flight=2)
    carts = [await new_cart(mapper) for _ in range(16)]
    positions = await asyncio.gather(
        *(committer.commit(rows, {cart.id: 0}) for cart, rows in carts)
    )
    assert committer.groups == 2
    assert sorted(len(p) for p in positions) == [len(rows) for _, rows in carts]
    for (cart, _), mine in zip(carts, positions, strict=True):
        found = await store.pool.fetch(
            "SELECT position FROM events WHERE stream_id = $1 ORDER BY version", cart.id
        )
        assert [r["position"] for r in found] == mine
