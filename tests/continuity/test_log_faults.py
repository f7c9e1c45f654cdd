"""Faults that once stalled or skipped the log, each reproduced against real PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from uuid import uuid4

import asyncpg
import pytest

from continuity.db import close_pool, create_pool
from continuity.errors import ConcurrencyConflict, EventIdReused
from continuity.rebuild import _REBUILD_CLASS
from continuity.runner import _LEASE_CLASS
from continuity.store import APPEND_SQL, EventStore
from tests.continuity.test_store import hold_event_id, new_event

pytestmark = pytest.mark.anyio

WRITERS = 16


async def idle_sessions_holding_advisory_locks(pool: asyncpg.Pool) -> int:
    """Advisory locks held by sessions that are not running anything: a lock that outlived its
    append. (A transaction-level lock cannot outlive its transaction.) A projection's lease and
    a rebuild's lock are session locks held by design, by whatever app another test (or
    another test run on the server) has running: they are not counted."""
    held: int = await pool.fetchval(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.granted AND a.state = 'idle'"
        " AND a.datname = current_database()"
        " AND NOT (l.objsubid = 2 AND l.classid::bigint = ANY($1::bigint[]))",
        [_LEASE_CLASS, _REBUILD_CLASS],
    )
    return held


async def append_until_cancelled(store: EventStore, rounds: int) -> None:
    stream = uuid4()
    for _ in range(rounds):
        with contextlib.suppress(asyncpg.QueryCanceledError):
            await store.append([new_event(stream, await store.stream_version(stream) + 1)])


async def test_no_statement_timeout_leaves_the_log_locked(
    store: EventStore, database_url: str, schema: str
) -> None:
    """Sweep statement_timeout across the append under contention: whenever the timeout lands,
    no session keeps a lock and the next append goes straight through."""
    for timeout_ms in range(1, 9):

        async def prepare_then_hurry(conn: asyncpg.Connection, limit_ms: int = timeout_ms) -> None:
            """asyncpg's own type lookups must not be what the timeout cancels: it cannot
            recover from that. Prepare first, then set the timeout for the session."""
            await conn.prepare(APPEND_SQL)
            await conn.execute(f"SET statement_timeout = {limit_ms}")

        impatient = await create_pool(
            database_url, schema, min_size=WRITERS, max_size=WRITERS, init=prepare_then_hurry
        )
        try:
            hurried = EventStore(impatient, schema)
            await asyncio.gather(*(append_until_cancelled(hurried, 12) for _ in range(WRITERS)))
            assert await idle_sessions_holding_advisory_locks(store.pool) == 0, timeout_ms
            probe = uuid4()
            await asyncio.wait_for(store.append([new_event(probe, 1)], {probe: 0}), 5)
            await hurried.aclose()
        finally:
            await close_pool(impatient)


async def test_no_client_cancellation_leaves_the_log_locked(
    store: EventStore, database_url: str, schema: str
) -> None:
    """Sweep the moment a client gives up on an append, from before it is sent to after it has
    finished, with other writers contending. The pool is full from the start, so what gets
    cancelled is always an append, never a connection being opened."""
    full = await create_pool(database_url, schema, min_size=WRITERS, max_size=WRITERS)
    clients = EventStore(full, schema)

    async def steady(stop: asyncio.Event) -> None:
        stream, version = uuid4(), 0
        while not stop.is_set():
            version += 1
            await clients.append([new_event(stream, version)], {stream: version - 1})

    stop = asyncio.Event()
    background = [asyncio.create_task(steady(stop)) for _ in range(4)]
    try:
        for step in range(60):
            victims = [
                asyncio.create_task(clients.append([new_event(uuid4(), 1)])) for _ in range(8)
            ]
            await asyncio.sleep(step * 0.00005)
            for victim in victims:
                victim.cancel()
            await asyncio.gather(*victims, return_exceptions=True)
        stop.set()
        await asyncio.gather(*background)
        await asyncio.sleep(0.05)  # let cancelled statements finish on the server
        assert await idle_sessions_holding_advisory_locks(store.pool) == 0
        probe = uuid4()
        await asyncio.wait_for(store.append([new_event(probe, 1)], {probe: 0}), 5)
    finally:
        stop.set()
        await clients.aclose()
        await close_pool(full)


async def test_stale_appends_on_a_small_pool_are_answered_not_hung(
    database_url: str, schema: str
) -> None:
    """16 stale appends on a pool of 4: each conflict is answered on the connection it holds."""
    small = await create_pool(database_url, schema, min_size=1, max_size=4)
    store = EventStore(small, schema)
    try:
        streams = [uuid4() for _ in range(WRITERS)]
        for stream in streams:
            await store.append([new_event(stream, 1), new_event(stream, 2)], {stream: 0})
        results = await asyncio.wait_for(
            asyncio.gather(
                *(store.append([new_event(s, 2)], {s: 1}) for s in streams),
                return_exceptions=True,
            ),
            10,
        )
        assert all(isinstance(r, ConcurrencyConflict) for r in results), results
        conflicts = [r for r in results if isinstance(r, ConcurrencyConflict)]
        assert {(c.expected, c.actual) for c in conflicts} == {(1, 2)}
        unexpected = await asyncio.wait_for(
            asyncio.gather(
                *(store.append([new_event(s, 1)]) for s in streams), return_exceptions=True
            ),
            10,
        )
        assert all(isinstance(r, ConcurrencyConflict) and r.actual == 2 for r in unexpected)
    finally:
        await store.aclose()
        await close_pool(small)


async def test_a_duplicate_event_id_in_flight_does_not_stall_unrelated_appends(
    store: EventStore,
) -> None:
    release = asyncio.Event()
    clash, holder = await hold_event_id(store, release)
    waiting = asyncio.create_task(store.append([clash]))
    await asyncio.sleep(0.2)
    try:
        other = uuid4()
        await asyncio.wait_for(store.append([new_event(other, 1)], {other: 0}), 2)
        assert not waiting.done()
    finally:
        release.set()
        await holder
    with pytest.raises(EventIdReused):
        await waiting
