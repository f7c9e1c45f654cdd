"""Processes and broadcasts against real PostgreSQL: every live process applies a broadcast, in
commit order, and acknowledges it; a stopped one is not waited for; one that lost its connection
starts its caches afresh when it is back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from uuid import UUID, uuid4

import asyncpg
import pytest

from continuity.processes import Process, acknowledged, publish

pytestmark = pytest.mark.anyio


class Heard:
    """What one process's handlers were told."""

    def __init__(self) -> None:
        self.broadcasts: list[tuple[str, UUID]] = []
        self.resets = 0

    def handle(self, kind: str, target: UUID) -> None:
        self.broadcasts.append((kind, target))

    def reset(self) -> None:
        self.resets += 1


Join = Callable[[], AbstractAsyncContextManager[tuple[Process, Heard]]]
"""join() -> a started process on the test's schema (heartbeat 0.2 s), stopped at the end."""


@pytest.fixture
def joined(database_url: str, schema: str) -> Join:
    @asynccontextmanager
    async def join() -> AsyncIterator[tuple[Process, Heard]]:
        process_id = uuid4()
        process = Process(
            lambda: asyncpg.connect(
                database_url,
                server_settings={
                    "search_path": schema,
                    "application_name": f"continuity-process {process_id}",
                },
            ),
            schema,
            heartbeat=0.2,
            process_id=process_id,
        )
        heard = Heard()
        process.on_broadcast(heard.handle, heard.reset)
        await process.start()
        try:
            yield process, heard
        finally:
            await process.stop()

    return join


async def send(pool: asyncpg.Pool, schema: str, target: UUID) -> int:
    async with pool.acquire() as conn, conn.transaction():
        return await publish(conn, schema, "device", target)


async def test_every_live_process_applies_a_broadcast_in_order_and_acknowledges_it(
    pool: asyncpg.Pool, schema: str, joined: Join
) -> None:
    async with joined() as (one, heard_one), joined() as (two, heard_two):
        targets = [uuid4() for _ in range(3)]
        seqs = [await send(pool, schema, target) for target in targets]
        assert seqs == sorted(seqs)
        acks = await acknowledged(pool, seqs[-1], 5.0)
        assert sorted(acks.acknowledged) == sorted([one.process_id, two.process_id])
        assert acks.missing == []
        for heard in (heard_one, heard_two):
            assert heard.broadcasts == [("device", target) for target in targets]


async def test_a_stopped_process_is_not_waited_for(
    pool: asyncpg.Pool, schema: str, joined: Join
) -> None:
    async with joined() as (live, _):
        async with joined() as (gone, _):
            pass
        seq = await send(pool, schema, uuid4())
        acks = await asyncio.wait_for(acknowledged(pool, seq, 5.0), 2.0)
        assert acks.acknowledged == [live.process_id]
        stopped = await pool.fetchval(
            "SELECT stopped_at IS NOT NULL FROM processes WHERE process_id = $1", gone.process_id
        )
        assert stopped


async def test_a_process_that_lost_its_connection_starts_afresh_and_acknowledges(
    pool: asyncpg.Pool, schema: str, joined: Join
) -> None:
    async with joined() as (process, heard):
        resets = heard.resets
        await pool.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            f"continuity-process {process.process_id}",
        )
        for _ in range(500):
            if not process.listening:
                break
            await asyncio.sleep(0.01)
        assert not process.listening  # its caches are off from here
        seq = await send(pool, schema, uuid4())  # sent while it cannot hear
        acks = await acknowledged(pool, seq, 10.0)
        assert acks.acknowledged == [process.process_id]  # back, it acknowledged everything
        assert process.listening
        assert heard.resets > resets  # and its caches started afresh
