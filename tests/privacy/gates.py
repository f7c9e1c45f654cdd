"""Test-controlled points in the life of a real pool's connections.

A `KeyVault` built on `gated_pool(...)` talks to the real PostgreSQL exactly as usual; the `Gate`
only lets a test observe and pause it at points it could not otherwise reach: hold one key read
after the database has answered it (so its snapshot predates what the test does next), see a
notification after the vault's own callback has handled it, learn the backend pid of each
LISTEN connection, refuse new LISTENs, and stall new checkouts (a database that cannot be reached).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from continuity.db import create_pool

if TYPE_CHECKING:
    _Connection = asyncpg.Connection[asyncpg.Record]
else:
    _Connection = asyncpg.Connection

T = TypeVar("T")

HANG_GUARD = 30.0
"""Seconds before a wait that should end is declared hung: a guard, never a timing assertion."""


async def within(awaitable: Awaitable[T]) -> T:
    return await asyncio.wait_for(awaitable, HANG_GUARD)


class Gate:
    def __init__(self) -> None:
        self.hold_next_key_read = False
        self.key_read_held = asyncio.Event()
        self.let_key_read_go = asyncio.Event()
        self.key_reads = 0
        self.listener_pids: list[int] = []
        self.notifications: list[str] = []
        self.refuse_listening = False
        self.stall_checkouts = False
        self.blocked = 0
        self._changed = asyncio.Event()

    async def setup(self, _conn: PoolConnectionProxy) -> None:
        """The pool's `setup`: runs on every checkout, and can stall it for good."""
        if self.stall_checkouts:
            self._block()
            await asyncio.Event().wait()

    async def notified(self, payload: str) -> None:
        """Until a LISTEN callback of the vault has run for `payload`."""
        await self._until(lambda: payload in self.notifications)

    async def listening_on_a_new_backend(self, than: int) -> int:
        """Until a LISTEN is registered on a backend other than `than`; returns its pid."""
        await self._until(lambda: bool(self.listener_pids) and self.listener_pids[-1] != than)
        return self.listener_pids[-1]

    async def blocked_at_least(self, count: int) -> None:
        """Until `count` LISTENs or checkouts have been refused or stalled."""
        await self._until(lambda: self.blocked >= count)

    async def _until(self, condition: Any) -> None:
        while not condition():
            self._changed.clear()
            await self._changed.wait()

    def _signal(self) -> None:
        self._changed.set()

    def _block(self) -> None:
        self.blocked += 1
        self._signal()


class GatedConnection(_Connection):
    gate: Gate

    async def fetch(self, query: str, *args: object, **options: Any) -> Any:
        try:
            rows = await super().fetch(query, *args, **options)
        except asyncpg.PostgresError:
            self._count(query)  # the database was asked, and refused (an erased subject)
            raise
        await self._after(query)
        return rows

    async def fetchrow(self, query: str, *args: object, **options: Any) -> Any:
        try:
            row = await super().fetchrow(query, *args, **options)
        except asyncpg.PostgresError:
            self._count(query)
            raise
        await self._after(query)
        return row

    def _count(self, query: str) -> bool:
        if "subject_keys" not in query:
            return False
        self.gate.key_reads += 1
        return True

    async def _after(self, query: str) -> None:
        gate = self.gate
        if not self._count(query):
            return
        if gate.hold_next_key_read:
            gate.hold_next_key_read = False
            gate.key_read_held.set()
            await gate.let_key_read_go.wait()

    async def add_listener(self, channel: str, callback: Any) -> None:
        gate = self.gate
        if gate.refuse_listening:
            gate._block()
            raise ConnectionResetError("the test refuses to LISTEN")

        def relay(conn: Any, pid: int, channel: str, payload: object) -> None:
            callback(conn, pid, channel, payload)
            gate.notifications.append(str(payload))
            gate._signal()

        self._relays = {**getattr(self, "_relays", {}), (channel, callback): relay}
        await super().add_listener(channel, relay)
        gate.listener_pids.append(self.get_server_pid())
        gate._signal()

    async def remove_listener(self, channel: str, callback: Any) -> None:
        relays: dict[tuple[str, Any], Any] = getattr(self, "_relays", {})
        await super().remove_listener(channel, relays.pop((channel, callback), callback))


async def gated_pool(database_url: str, schema: str, gate: Gate, **kwargs: Any) -> asyncpg.Pool:
    """A real pool on `schema` whose connections report to `gate`."""

    class Connection(GatedConnection):
        pass

    Connection.gate = gate
    return await create_pool(
        database_url,
        schema,
        min_size=1,
        max_size=4,
        connection_class=Connection,
        setup=gate.setup,
        **kwargs,
    )
