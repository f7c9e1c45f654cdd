"""This process among the others: an identity, a heartbeat, and broadcasts that every live process
applies and acknowledges.

A broadcast (a device revoked or moved to another subject) is a row of `broadcasts`, numbered in
commit order: `publish` takes a transaction lock before its insert, which costs nothing at the
rate broadcasts come. It NOTIFYs on commit. Each process applies the broadcasts after the last
one it applied, in order, and writes that number (its acknowledgement) with its heartbeat. A
sender then waits, bounded, until every live process has acknowledged (`acknowledged`), so what
it answers its caller is true in every process, not merely soon.

A process that cannot hear broadcasts (its connection lost) must not trust its caches: `listening`
is False until it is back, and it stops heartbeating, so after `LIVE` seconds nobody waits for it.
Back, it starts its caches afresh (`on_reset`) and acknowledges everything sent so far. So does a
process that was silent longer than `LIVE` with its connection up (a stalled event loop): senders
stopped waiting for it, so it cannot know what it missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from uuid import UUID, uuid4

import asyncpg

from continuity.db import DATABASE_ERRORS, Conn, Queryable

log = logging.getLogger("continuity.processes")

HEARTBEAT = 1.0
"""Seconds between two heartbeats (each also picks up any broadcast whose NOTIFY was missed)."""
LIVE = timedelta(seconds=5)
"""A process whose last heartbeat is older is not waited for."""
RETRY = 0.5
"""Seconds before a lost connection is tried again (doubling, up to `RETRY_MAX`)."""
RETRY_MAX = 2.0
"""Short: a database back from a restart is heard within it, and a refused connect costs nothing."""
PROBE_TIMEOUT = 5.0
_LOCK = 0x62726F61  # "broa": serialises broadcasts, so their numbers are their commit order

_TIDY = """
DELETE FROM processes WHERE heartbeat_at < now() - interval '1 day';
DELETE FROM broadcasts WHERE sent_at < now() - interval '1 hour' AND seq <= (
    SELECT coalesce(min(applied), 0) FROM processes
    WHERE stopped_at IS NULL AND heartbeat_at > now() - interval '1 hour')
"""
"""What a joining process clears away: processes gone for a day, and broadcasts an hour old
that every process heard from within the hour has applied (one silent for longer starts its
caches afresh when it is back, so it needs none of them)."""

Connect = Callable[[], Awaitable[asyncpg.Connection]]
Handler = Callable[[str, UUID], None]


@dataclass(frozen=True)
class Acknowledgements:
    """Which live processes applied a broadcast in time, and which did not."""

    seq: int
    acknowledged: list[UUID]
    missing: list[UUID]


def channel_of(schema: str) -> str:
    return f"{schema}_broadcasts"


async def publish(conn: Conn, schema: str, kind: str, target: UUID) -> int:
    """Record a broadcast in the caller's transaction (sent when it commits); its number."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
    seq: int = await conn.fetchval(
        "INSERT INTO broadcasts (kind, target) VALUES ($1, $2) RETURNING seq", kind, target
    )
    await conn.execute("SELECT pg_notify($1, $2)", channel_of(schema), str(seq))
    return seq


async def acknowledged(
    db: Queryable, seq: int, within: float, *, live: timedelta = LIVE
) -> Acknowledgements:
    """Wait until every live process has applied broadcast `seq`, at most `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    pause = 0.002
    while True:
        rows = await db.fetch(
            "SELECT process_id, applied >= $1 AS done FROM processes"
            " WHERE stopped_at IS NULL AND heartbeat_at > now() - $2::interval"
            " ORDER BY started_at",
            seq,
            live,
        )
        missing = [row["process_id"] for row in rows if not row["done"]]
        if not missing or loop.time() >= deadline:
            done = [row["process_id"] for row in rows if row["done"]]
            return Acknowledgements(seq, done, missing)
        await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))
        pause = min(pause * 2, 0.05)


@dataclass
class Process:
    """This process: registered while running, applying broadcasts to `handlers`."""

    connect: Connect
    schema: str
    heartbeat: float = HEARTBEAT
    process_id: UUID = field(default_factory=uuid4)
    handlers: list[Handler] = field(default_factory=list)
    resets: list[Callable[[], None]] = field(default_factory=list)
    _conn: asyncpg.Connection | None = None
    _applied: int = 0
    _listening: bool = False
    _beaten: float = 0.0
    """When the last heartbeat was written (monotonic)."""
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    @property
    def listening(self) -> bool:
        """Whether broadcasts reach this process now: if not, caches must not be trusted."""
        return self._listening

    def on_broadcast(self, handler: Handler, reset: Callable[[], None]) -> None:
        """`handler(kind, target)` for each broadcast; `reset()` when some may have been missed."""
        self.handlers.append(handler)
        self.resets.append(reset)

    async def start(self) -> None:
        await self._join()
        self._task = asyncio.create_task(self._run(), name="continuity-process")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
        conn, self._conn = self._conn, None
        self._listening = False
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await asyncio.wait_for(
                    conn.execute(
                        "UPDATE processes SET stopped_at = now() WHERE process_id = $1",
                        self.process_id,
                    ),
                    PROBE_TIMEOUT,
                )
            conn.terminate()

    async def _join(self) -> None:
        """Connect, listen, start caches afresh and acknowledge everything sent so far."""
        conn = await self.connect()
        try:
            await conn.execute(_TIDY)
            await conn.add_listener(channel_of(self.schema), self._notified)
            applied = await conn.fetchval("SELECT coalesce(max(seq), 0) FROM broadcasts")
            await conn.execute(
                "INSERT INTO processes (process_id, host, pid, applied) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (process_id) DO UPDATE SET applied = excluded.applied,"
                " heartbeat_at = now(), stopped_at = NULL",
                self.process_id,
                socket.gethostname()[:255],
                os.getpid(),
                applied,
            )
        except BaseException:
            conn.terminate()
            raise
        for reset in self.resets:
            reset()
        self._conn, self._applied, self._listening = conn, applied, True
        self._beaten = time.monotonic()

    def _notified(self, _conn: object, _pid: object, _channel: object, _payload: object) -> None:
        self._wake.set()

    async def _run(self) -> None:
        retry = RETRY
        while True:
            try:
                await self._beat()
                retry = RETRY
            except DATABASE_ERRORS as exc:
                self._lose()
                log.warning(
                    "process %s: lost its broadcasts connection (%s); caches off until back",
                    self.process_id,
                    type(exc).__name__,
                )
                await asyncio.sleep(retry)
                retry = min(retry * 2, RETRY_MAX)
                with contextlib.suppress(
                    OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError
                ):
                    await asyncio.wait_for(self._join(), PROBE_TIMEOUT)
                    log.info("process %s: hearing broadcasts again", self.process_id)

    async def _beat(self) -> None:
        """Apply what was broadcast since the last time, acknowledge it with a heartbeat, and
        wait for the next NOTIFY or heartbeat."""
        conn = self._conn
        if conn is None or conn.is_closed():
            raise OSError("no connection")
        if time.monotonic() - self._beaten > LIVE.total_seconds():
            raise TimeoutError("silent for longer than a live process")  # senders gave up on it
        self._wake.clear()
        rows = await asyncio.wait_for(
            conn.fetch(
                "SELECT seq, kind, target FROM broadcasts WHERE seq > $1 ORDER BY seq",
                self._applied,
            ),
            PROBE_TIMEOUT,
        )
        for row in rows:
            for handler in self.handlers:
                handler(row["kind"], row["target"])
            self._applied = row["seq"]
        await asyncio.wait_for(
            conn.execute(
                "UPDATE processes SET applied = $2, heartbeat_at = now() WHERE process_id = $1",
                self.process_id,
                self._applied,
            ),
            PROBE_TIMEOUT,
        )
        self._beaten = time.monotonic()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self.heartbeat)

    def _lose(self) -> None:
        self._listening = False
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()
        for reset in self.resets:
            reset()
