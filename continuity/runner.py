"""The async projection runner: follows the log from a projection's checkpoint.

Each page of events is handled and the projection's tracking position moved in one
transaction, so a crash neither loses nor doubles work: the next runner starts from the last
committed position. Only one runner applies a projection at a time, across processes: it holds
the projection's lease, a session advisory lock on a connection of its own (opened by `connect`,
outside the pool, so that standing runners never starve requests of pooled connections; taken
from the pool when no `connect` is given). When its process dies, the connection and the lease
go with it, and a waiting runner takes over.

Each page's transaction first locks the projection's tracking row and checks it is where the
runner left it: a rebuild that switched in tables built further moves it, and the runner then
goes on from there instead of applying those events twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from continuity.db import Conn
from continuity.mapper import EventMapper
from continuity.projection import Projection, live
from continuity.store import EventStore

_LEASE_CLASS = 0x70726F6A  # "proj"


class ProjectionRunner:
    def __init__(
        self,
        store: EventStore,
        mapper: EventMapper,
        projection: Projection,
        *,
        page_size: int = 500,
        poll_interval: float = 1.0,
        connect: Callable[[], Awaitable[asyncpg.Connection]] | None = None,
    ) -> None:
        self.store = store
        self.mapper = mapper
        self.projection = projection
        self.page_size = page_size
        self.poll_interval = poll_interval
        self.connect = connect
        self.position = 0
        self.leased = asyncio.Event()
        self._wake = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Take the lease (waiting while another runner holds it), then follow the log until
        `stop` is set."""
        lease: Conn = await (self.connect() if self.connect else self.store.pool.acquire())
        try:
            await lease.add_listener(self.store.channel, self._on_notify)
            if not await self._take_lease(lease, stop):
                return
            self.leased.set()
            self.position = await self._checkpoint()
            while not stop.is_set():
                if await self.step():
                    continue
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(_first(self._wake, stop), self.poll_interval)
        finally:
            await asyncio.shield(self._give_back(lease))

    async def step(self) -> bool:
        """Apply the next page, if there is one; True if it did."""
        page = await self.store.select_notifications(
            self.position, self.page_size, topics=self.projection.topics, inclusive_of_start=False
        )
        if not page:
            return False
        envelopes = [e for e in await self.mapper.to_envelopes(page) if not e.erased]
        async with self.store.pool.acquire() as conn, conn.transaction():
            checkpoint = await conn.fetchval(
                "SELECT position FROM tracking WHERE name = $1 FOR UPDATE", self.projection.name
            )
            if checkpoint != self.position:  # a rebuild switched in tables built further
                self.position = checkpoint or 0
                return True
            if envelopes:
                await self.projection.handle(conn, live(self.projection), envelopes)
            await self.store.insert_tracking(self.projection.name, page[-1].position, conn)
        self.position = page[-1].position
        return True

    async def _checkpoint(self) -> int:
        """Where the projection's tables are; its tracking row is created at 0 if new, so that
        every page's transaction has a row to lock."""
        await self.store.pool.execute(
            "INSERT INTO tracking (name, position) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING",
            self.projection.name,
        )
        return await self.store.max_tracking_id(self.projection.name) or 0

    async def _take_lease(self, lease: Conn, stop: asyncio.Event) -> bool:
        key = f"{self.store.schema}.{self.projection.name}"
        while not stop.is_set():
            if await lease.fetchval(
                "SELECT pg_try_advisory_lock($1, hashtext($2))", _LEASE_CLASS, key
            ):
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.poll_interval)
        return False

    async def _give_back(self, lease: Conn) -> None:
        """Release the lease: a connection of its own is closed (which releases it); a pooled
        one is unlocked before it goes back, or closed if it cannot confirm that."""
        if not isinstance(lease, PoolConnectionProxy):
            try:
                await asyncio.wait_for(lease.close(), 5)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                lease.terminate()
            return
        try:
            await lease.remove_listener(self.store.channel, self._on_notify)
            await lease.execute("SELECT pg_advisory_unlock_all()")
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            lease.terminate()
        finally:
            await self.store.pool.release(lease)

    def _on_notify(self, *args: object) -> None:
        self._wake.set()


async def _first(*events: asyncio.Event) -> None:
    """Return when any of `events` is set."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
