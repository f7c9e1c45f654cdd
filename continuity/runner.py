"""The async projection runner: follows the log from a projection's checkpoint.

Each page of events is handled and the projection's tracking position moved in one
transaction, so a crash neither loses nor doubles work: the next runner starts from the last
committed position. Only one runner applies a projection at a time, across processes: it holds
the projection's lease, a session advisory lock on a connection of its own. When its process
dies, the connection and the lease go with it, and a waiting runner takes over.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from continuity.db import Conn
from continuity.mapper import EventMapper
from continuity.store import EventStore
from projections.envelope import Envelope

Handle = Callable[[Conn, list[Envelope]], Awaitable[None]]
"""Applies a page of events to the projection's tables, inside the runner's transaction.
Erased subjects' placeholders never reach it."""

_LEASE_CLASS = 0x70726F6A  # "proj"


@dataclass(frozen=True)
class AsyncProjection:
    """A projection the runner follows: its name (its tracking row and its lease), the topics it
    consumes (all, if empty), and how it applies a page."""

    name: str
    topics: Sequence[str]
    handle: Handle


class ProjectionRunner:
    def __init__(
        self,
        store: EventStore,
        mapper: EventMapper,
        projection: AsyncProjection,
        *,
        page_size: int = 500,
        poll_interval: float = 1.0,
    ) -> None:
        self.store = store
        self.mapper = mapper
        self.projection = projection
        self.page_size = page_size
        self.poll_interval = poll_interval
        self.position = 0
        self.leased = asyncio.Event()
        self._wake = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Take the lease (waiting while another runner holds it), then follow the log until
        `stop` is set."""
        lease = await self.store.pool.acquire()
        try:
            await lease.add_listener(self.store.channel, self._on_notify)
            if not await self._take_lease(lease, stop):
                return
            self.leased.set()
            self.position = await self.store.max_tracking_id(self.projection.name) or 0
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
            if envelopes:
                await self.projection.handle(conn, envelopes)
            await self.store.insert_tracking(self.projection.name, page[-1].position, conn)
        self.position = page[-1].position
        return True

    async def _take_lease(self, lease: PoolConnectionProxy, stop: asyncio.Event) -> bool:
        key = self.projection.name
        while not stop.is_set():
            if await lease.fetchval(
                "SELECT pg_try_advisory_lock($1, hashtext($2))", _LEASE_CLASS, key
            ):
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.poll_interval)
        return False

    async def _give_back(self, lease: PoolConnectionProxy) -> None:
        """Release the lease before the connection goes back to the pool; a connection that
        cannot confirm it is closed instead, which releases it too."""
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
