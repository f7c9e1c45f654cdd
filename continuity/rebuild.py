"""Rebuilding a projection without downtime: fold the whole log into side tables while the live
ones keep serving and taking writes, then switch over in one short transaction.

The switch holds off the projection's writers (`LOCK ... IN EXCLUSIVE MODE`: readers still
read the old rows), folds the last events into the side tables, drops the subjects erased
meanwhile, and renames the side tables into place. What it must fold last depends on the mode:

- inline: every committed event. Its live tables reflect each one (the append wrote them in its
  own transaction), and an append still in flight writes after the switch, onto the new rows.
- async: up to the runner's checkpoint, read with its row locked so no page commits meanwhile.
  If the rebuild got further than the runner, the checkpoint moves up to it; the runner sees
  that in its next page's transaction and goes on from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from continuity import catalog
from continuity.collector import fewer_collections
from continuity.db import Conn
from continuity.mapper import EventMapper
from continuity.projection import Buildable, Builder, Placement, Projection, side
from continuity.store import EventStore, RecordedEvent
from projections.envelope import Envelope

log = logging.getLogger("continuity.projections")

_LOCK_RETRY = 0.2
_REBUILD_CLASS = 0x72626C64  # "rbld"

PAGE_SIZE = 5000
"""Events per page of a rebuild: read and decrypted while the page before is folded."""

_DECRYPT_SLICE = 500
"""Events decrypted between two turns of the event loop while the next page is prepared."""

Progress = Callable[[int, int], None]
"""Called after each page with (events folded so far, log position reached)."""


@dataclass(frozen=True)
class Rebuilt:
    name: str
    events: int
    position: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


class Rebuilder:
    def __init__(
        self, store: EventStore, mapper: EventMapper, *, page_size: int = PAGE_SIZE
    ) -> None:
        self.store = store
        self.mapper = mapper
        self.page_size = page_size

    async def stale(self, projection: Projection) -> bool:
        """Whether its rows were built by another version, or not at all."""
        async with self.store.pool.acquire() as conn:
            entry = (await catalog.entries(conn)).get(projection.name)
            if entry is None or entry.version != projection.version:
                return True
            for table in projection.tables:
                if await conn.fetchval("SELECT to_regclass($1)", table.name) is None:
                    return True
        return False

    async def rebuild(
        self,
        projection: Projection,
        progress: Progress | None = None,
        *,
        if_stale: bool = False,
        before_switch: Callable[[], Awaitable[None]] | None = None,
    ) -> Rebuilt | None:
        """Rebuild `projection` and switch it in. One rebuild per projection at a time: another
        waits for it, then (with `if_stale`) finds nothing left to do and returns None.
        `before_switch` runs once the side tables have caught up with the settled log."""
        if if_stale and not await self.stale(projection):
            return None
        async with self._exclusive(projection):
            if if_stale and not await self.stale(projection):
                return None
            started = time.perf_counter()
            placement = {table.name: side(table.name) for table in projection.tables}
            await self._create_side(projection)
            with fewer_collections():
                events, position = await self._fold(projection, placement, progress)
            if before_switch is not None:
                await before_switch()
            events += await self._switch(projection, placement, position)
            rebuilt = Rebuilt(projection.name, events, position, time.perf_counter() - started)
            log.info("rebuilt %s: %d events in %.2f s", projection.name, events, rebuilt.seconds)
            return rebuilt

    @contextlib.asynccontextmanager
    async def _exclusive(self, projection: Projection) -> AsyncIterator[None]:
        """A session advisory lock per projection and schema, on a connection of its own; tried
        again every `_LOCK_RETRY` seconds while another rebuild holds it, not waited for in one
        statement, which the pool's statement timeout would cancel."""
        key = f"{self.store.schema}.{projection.name}"
        async with self.store.pool.acquire() as conn:
            lock = "SELECT pg_try_advisory_lock($1, hashtext($2))"
            while True:
                if await conn.fetchval(lock, _REBUILD_CLASS, key):
                    break
                await asyncio.sleep(_LOCK_RETRY)
            try:
                yield
            finally:
                await conn.execute(
                    "SELECT pg_advisory_unlock($1, hashtext($2))", _REBUILD_CLASS, key
                )

    async def _create_side(self, projection: Projection) -> None:
        async with self.store.pool.acquire() as conn, conn.transaction():
            for table in projection.tables:
                await conn.execute(f"DROP TABLE IF EXISTS {side(table.name)}")
                for statement in table.create(side(table.name)):
                    await conn.execute(statement)

    async def _fold(
        self, projection: Projection, placement: Placement, progress: Progress | None
    ) -> tuple[int, int]:
        """Fold the settled log into the side tables, page by page, reading and decrypting the
        next page while the current one is folded. Returns (events folded, last position
        read)."""
        builder: Builder = (
            projection.builder(placement)
            if isinstance(projection, Buildable)
            else _Handling(projection, placement)
        )
        position = events = 0
        page = await self._prepare(projection, position)
        while page:
            position = page[-1].position
            following = asyncio.create_task(self._prepare(projection, position))
            try:
                envelopes = [e for e in page if not e.erased]
                if envelopes:
                    async with self.store.pool.acquire() as conn, conn.transaction():
                        await builder.feed(conn, envelopes)
                events += len(envelopes)
            except BaseException:
                following.cancel()
                raise
            if progress is not None:
                progress(events, position)
            page = await following
        async with self.store.pool.acquire() as conn, conn.transaction():
            await builder.flush(conn)
        return events, position

    async def _prepare(self, projection: Projection, after: int) -> list[Envelope]:
        """The page after `after`, decrypted (one envelope per event, erased ones included), a
        slice at a time: between slices the page being applied gets the event loop back, so
        decrypting fills the time it waits on the database instead of holding it up. The rows
        read are let go once decrypted."""
        page = await self.store.select_notifications(
            after, self.page_size, topics=projection.topics, inclusive_of_start=False
        )
        envelopes: list[Envelope] = []
        for start in range(0, len(page), _DECRYPT_SLICE):
            if start:
                await asyncio.sleep(0)
            envelopes += await self.mapper.to_envelopes(page[start : start + _DECRYPT_SLICE])
        return envelopes

    async def _apply(
        self, projection: Projection, placement: Placement, envelopes: list[Envelope], conn: Conn
    ) -> int:
        envelopes = [e for e in envelopes if not e.erased]
        if envelopes:
            await projection.handle(conn, placement, envelopes)
        return len(envelopes)

    async def _switch(self, projection: Projection, placement: Placement, position: int) -> int:
        """Hold off the writers, fold what is left, and swap the side tables in; returns how
        many events it folded."""
        tables = [table.name for table in projection.tables]
        async with self.store.pool.acquire() as conn, conn.transaction():
            if projection.mode == "async":
                await conn.execute(
                    "INSERT INTO tracking (name, position) VALUES ($1, 0)"
                    " ON CONFLICT (name) DO NOTHING",
                    projection.name,
                )
                checkpoint = await conn.fetchval(
                    "SELECT position FROM tracking WHERE name = $1 FOR UPDATE", projection.name
                )
            existing = [t for t in tables if await conn.fetchval("SELECT to_regclass($1)", t)]
            if existing:
                await conn.execute(f"LOCK TABLE {', '.join(existing)} IN EXCLUSIVE MODE")
            if projection.mode == "inline":
                last = await self.store.select_committed(position, projection.topics, conn)
            else:
                last = await self._settled_up_to(projection, position, checkpoint or 0)
            envelopes = await self.mapper.to_envelopes(last, conn)
            events = await self._apply(projection, placement, envelopes, conn) if last else 0
            built_to = max([position, *(r.position for r in last)])
            if projection.mode == "async" and built_to > (checkpoint or 0):
                await self.store.insert_tracking(projection.name, built_to, conn)
            for table in projection.tables:
                if table.subject_column is not None:
                    await conn.execute(
                        f"DELETE FROM {side(table.name)} t USING erased_subjects e"
                        f" WHERE t.{table.subject_column} = e.subject_id"
                    )
            if existing:
                await conn.execute(f"DROP TABLE {', '.join(existing)}")
            for name in tables:
                await conn.execute(f"ALTER TABLE {placement[name]} RENAME TO {name}")
                await _rename_indexes(conn, name, placement[name])
            await catalog.record(conn, projection, built_to)
        return events

    async def _settled_up_to(
        self, projection: Projection, after: int, checkpoint: int
    ) -> list[RecordedEvent]:
        """The events between the rebuild's position and the runner's checkpoint (all settled:
        the runner read them)."""
        records: list[RecordedEvent] = []
        while after < checkpoint:
            page = await self.store.select_notifications(
                after, self.page_size, checkpoint, projection.topics, inclusive_of_start=False
            )
            if not page:
                break
            records += page
            after = page[-1].position
        return records


@dataclass(frozen=True)
class _Handling:
    """The builder of a projection that offers none: each page goes through `handle`."""

    projection: Projection
    placement: Placement

    async def feed(self, conn: Conn, envelopes: list[Envelope]) -> None:
        await self.projection.handle(conn, self.placement, envelopes)

    async def flush(self, conn: Conn) -> None:
        """Nothing is held back."""


async def _rename_indexes(conn: Conn, table: str, built_as: str) -> None:
    """Give the switched-in table's indexes the names they would have had if built in place."""
    for name in await conn.fetch(
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE i.indrelid = $1::regclass",
        table,
    ):
        old = name["relname"]
        new = old.replace(built_as, table, 1)
        if new != old and await conn.fetchval("SELECT to_regclass($1)", new) is None:
            await conn.execute(f'ALTER INDEX "{old}" RENAME TO "{new}"')
