"""The event store: an async recorder on asyncpg over the append-only `events` table.

Method names follow `eventsourcing`'s recorders where the meaning is the same (`select_events`,
`select_notifications`, `max_notification_id`, `subscribe`, `insert_tracking`,
`max_tracking_id`); `append` is `insert_events` with per-stream expected versions and
idempotent retries. The store sees only ciphertext: encryption happens in the mapper above it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from uuid import UUID

import asyncpg
import msgspec
from asyncpg.pool import PoolConnectionProxy

from continuity.db import Conn
from continuity.errors import (
    ConcurrencyConflict,
    DuplicateEvent,
    EventIdReused,
    SubjectErased,
    ViewMoved,
)
from continuity.group_commit import GroupCommitter, SnapshotWrite, ViewWrite, expected_version

WRONG_EXPECTED_VERSION = "CY409"
SUBJECT_ERASED = "CY410"
APPEND_SQL = "SELECT append_events($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
NOTIFY_DEBOUNCE = 0.005
"""Seconds the notifier waits to gather more commits into one NOTIFY."""

ObserveAppend = Callable[[str, int, float], None]
"""Told of every append: its outcome (committed, replayed, conflict, erased, reused, failed),
how many events it carried, and how long it took in seconds (`Metrics.observe_append`)."""


class NewEvent(msgspec.Struct, frozen=True):
    """A row to append: everything but the position and the transaction. `recorded_at` comes
    from the writer, because the payload's associated data binds it."""

    stream_id: UUID
    version: int
    event_id: UUID
    subject_id: UUID
    topic: str
    channel: str
    recorded_at: datetime
    key_version: int
    digest: bytes
    payload: bytes


class RecordedEvent(msgspec.Struct, frozen=True, gc=False):
    """A row of the log as read back (plain values only, so not tracked by the garbage
    collector)."""

    position: int
    stream_id: UUID
    version: int
    event_id: UUID
    subject_id: UUID
    topic: str
    channel: str
    recorded_at: datetime
    key_version: int
    payload: bytes
    digest: bytes


class NotificationPage(msgspec.Struct, frozen=True):
    """A page of settled events, and whether it stopped at an event still in flight."""

    events: list[RecordedEvent]
    held_back: bool


class TrackingConflict(Exception):
    """A consumer's tracked position may only move forward."""

    def __init__(self, name: str, position: int) -> None:
        super().__init__(f"tracking for {name!r} is already at or beyond {position}")
        self.name = name
        self.position = position


_COLUMNS = (
    "position, stream_id, version, event_id, subject_id, topic, channel, recorded_at,"
    " key_version, payload, digest"
)
# Only rows of transactions below the oldest one still in flight: every event that could still
# commit has a higher position than anything this returns (see append_events in 0004).
_SETTLED = "tx_id < pg_snapshot_xmin(pg_current_snapshot())"

Project = Callable[[Conn, list[int]], Awaitable[None]]


def _record(row: asyncpg.Record) -> RecordedEvent:
    """The columns are selected in the struct's field order (a settled flag may follow)."""
    return RecordedEvent(*row[:11])


class EventStore:
    """Appends and reads events; one instance per pool and schema."""

    def __init__(
        self, pool: asyncpg.Pool, schema: str, observe: ObserveAppend | None = None
    ) -> None:
        self.pool = pool
        self.schema = schema
        self.observe = observe
        self.channel = f"{schema}_events"
        self._wake = asyncio.Event()
        self._notifier: asyncio.Task[None] | None = None
        self.group = GroupCommitter(pool)

    # -- writing -----------------------------------------------------------------------------

    async def append(
        self,
        events: Sequence[NewEvent],
        expected: Mapping[UUID, int] | None = None,
        *,
        project: Project | None = None,
        views: Sequence[ViewWrite] = (),
        snapshots: Sequence[SnapshotWrite] = (),
    ) -> list[int]:
        """Append `events` atomically and return their positions.

        `expected` maps each stream to the version it must be at (0: the stream must not
        exist); a stream without one must not yet hold any of the batch's versions. A batch
        whose event_ids are all recorded already, with the same content, returns the original
        positions and writes nothing.

        Without `project` the append joins a group commit (`continuity.group_commit`), with
        the inline view rows and snapshots computed beforehand (`views`, `snapshots`; a view
        row changed since it was read is ViewMoved). `project` instead runs in the append's
        own transaction after the insert, for a caller that must read to fold.
        """
        return (await self.append_detailed(events, expected, project, views, snapshots))[0]

    async def append_detailed(
        self,
        events: Sequence[NewEvent],
        expected: Mapping[UUID, int] | None = None,
        project: Project | None = None,
        views: Sequence[ViewWrite] = (),
        snapshots: Sequence[SnapshotWrite] = (),
    ) -> tuple[list[int], bool]:
        """`append`, and whether the positions are an earlier identical append's (a retry:
        nothing was written, no view and no `project`)."""
        if not events:
            return [], False
        if project is not None and (views or snapshots):
            raise ValueError("views and snapshots are written by a group commit, without project")
        _check_batch(events, expected or {})
        if self.observe is None:
            return await self._append(events, expected, project, views, snapshots)
        started = time.perf_counter()
        outcome = "failed"
        try:
            positions, replayed = await self._append(events, expected, project, views, snapshots)
            outcome = "replayed" if replayed else "committed"
            return positions, replayed
        except (ConcurrencyConflict, DuplicateEvent, ViewMoved):
            outcome = "conflict"
            raise
        except SubjectErased:
            outcome = "erased"
            raise
        except EventIdReused:
            outcome = "reused"
            raise
        finally:
            self.observe(outcome, len(events), time.perf_counter() - started)

    async def _append(
        self,
        events: Sequence[NewEvent],
        expected: Mapping[UUID, int] | None,
        project: Project | None,
        views: Sequence[ViewWrite],
        snapshots: Sequence[SnapshotWrite],
    ) -> tuple[list[int], bool]:
        """The positions, and whether they are an earlier identical append's (a retry)."""
        try:
            if project is None:
                positions = await self.group.commit(events, expected or {}, views, snapshots)
            else:
                async with self.pool.acquire() as conn, conn.transaction():
                    positions = await self._insert(conn, events, expected or {})
                    await project(conn, positions)
        except (ConcurrencyConflict, DuplicateEvent):
            # An identical batch may have been recorded before (or while this one waited on its
            # event_ids): that is a retry. The connection is back in the pool before this looks.
            original = await self._original_positions(events)
            if original is None:
                raise
            return original, True
        self._notify()
        return positions, False

    async def _insert(
        self, conn: Conn, events: Sequence[NewEvent], expected: Mapping[UUID, int]
    ) -> list[int]:
        """One call of append_events; every refusal is answered from its own error."""
        try:
            positions: list[int] = await conn.fetchval(
                APPEND_SQL,
                [e.stream_id for e in events],
                [e.version for e in events],
                [e.event_id for e in events],
                [e.subject_id for e in events],
                [e.topic for e in events],
                [e.channel for e in events],
                [e.recorded_at for e in events],
                [e.key_version for e in events],
                [e.digest for e in events],
                [e.payload for e in events],
                list(expected.keys()),
                list(expected.values()),
            )
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == "events_event_id_key":
                raise DuplicateEvent([e.event_id for e in events]) from None
            raise
        except asyncpg.PostgresError as exc:
            detail = str(exc.detail or "")
            if exc.sqlstate == WRONG_EXPECTED_VERSION:
                stream, actual = detail.split()
                stream_id = UUID(stream)
                raise ConcurrencyConflict(
                    stream_id, expected_version(stream_id, events, expected), int(actual)
                ) from None
            if exc.sqlstate == SUBJECT_ERASED:
                raise SubjectErased(UUID(detail)) from None
            raise
        return positions

    async def _original_positions(self, events: Sequence[NewEvent]) -> list[int] | None:
        """The positions of an identical earlier append, None if there was none, and
        EventIdReused if some of the event_ids were used for something else."""
        ids = [e.event_id for e in events]
        rows = await self.pool.fetch(
            "SELECT event_id, position, stream_id, topic, digest FROM events"
            " WHERE event_id = ANY($1::uuid[])",
            ids,
        )
        if not rows:
            return None
        found = {row["event_id"]: row for row in rows}
        for event in events:
            row = found.get(event.event_id)
            if row is None or (row["stream_id"], row["topic"], bytes(row["digest"])) != (
                event.stream_id,
                event.topic,
                event.digest,
            ):
                reused = event.event_id if row is not None else rows[0]["event_id"]
                raise EventIdReused(reused)
        return [found[event_id]["position"] for event_id in ids]

    # -- reading -----------------------------------------------------------------------------

    async def recorded_digest(self, event_id: UUID) -> bytes | None:
        """The digest stored with `event_id`, None if no event has that id."""
        digest: bytes | None = await self.pool.fetchval(
            "SELECT digest FROM events WHERE event_id = $1", event_id
        )
        return digest

    async def stream_version(self, stream_id: UUID) -> int:
        version: int | None = await self.pool.fetchval(
            "SELECT max(version) FROM events WHERE stream_id = $1", stream_id
        )
        return version or 0

    async def select_events(
        self,
        stream_id: UUID,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
        conn: Conn | None = None,
    ) -> list[RecordedEvent]:
        """One stream's events by version, like eventsourcing's `select_events`."""
        sql = f"SELECT {_COLUMNS} FROM events WHERE stream_id = $1"
        args: list[object] = [stream_id]
        if gt is not None:
            args.append(gt)
            sql += f" AND version > ${len(args)}"
        if lte is not None:
            args.append(lte)
            sql += f" AND version <= ${len(args)}"
        sql += " ORDER BY version DESC" if desc else " ORDER BY version"
        if limit is not None:
            args.append(limit)
            sql += f" LIMIT ${len(args)}"
        rows = await (conn or self.pool).fetch(sql, *args)
        return [_record(row) for row in rows]

    async def select_streams(
        self, stream_ids: Sequence[UUID], after: Mapping[UUID, int] | None = None
    ) -> list[RecordedEvent]:
        """Several streams' events in one read: each stream's in version order, those after
        its version in `after` (a snapshot's, say) only."""
        if not stream_ids:
            return []
        after = after or {}
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM events"
            " JOIN unnest($1::uuid[], $2::int[]) AS s(id, after)"
            " ON stream_id = s.id AND version > s.after ORDER BY stream_id, version",
            list(stream_ids),
            [after.get(stream_id, 0) for stream_id in stream_ids],
        )
        return [_record(row) for row in rows]

    async def select_subject(
        self, subject_id: UUID, conn: Conn | None = None, *, topics: Sequence[str] = ()
    ) -> list[RecordedEvent]:
        """Every event of one subject (of `topics`, if given), in position order (what a
        subject's view is rebuilt from); on `conn`, it includes that transaction's own
        appends."""
        args: list[object] = [subject_id]
        sql = f"SELECT {_COLUMNS} FROM events WHERE subject_id = $1"
        if topics:
            args.append(list(topics))
            sql += " AND topic = ANY($2::text[])"
        rows = await (conn or self.pool).fetch(sql + " ORDER BY position", *args)
        return [_record(row) for row in rows]

    async def select_subject_page(
        self, subject_id: UUID, *, after: int, upto: int, limit: int
    ) -> list[RecordedEvent]:
        """Up to `limit` events of the subject with a position above `after` and at most
        `upto`, in position order: a long history read a page at a time (an export)."""
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM events WHERE subject_id = $1"
            " AND position > $2 AND position <= $3 ORDER BY position LIMIT $4",
            subject_id,
            after,
            upto,
            limit,
        )
        return [_record(row) for row in rows]

    async def subject_extent(self, subject_id: UUID) -> tuple[int, int]:
        """How many events the subject has, and the highest position among them (0: none)."""
        row = await self.pool.fetchrow(
            "SELECT count(*), coalesce(max(position), 0) FROM events WHERE subject_id = $1",
            subject_id,
        )
        assert row is not None
        return row[0], row[1]

    async def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> list[RecordedEvent]:
        """A page of the global log in position order, settled events only.

        The page ends before the first row that is not settled (see `_SETTLED`) rather than
        leaving it out: with appends as they are, every row after it is unsettled too, and if
        that ever stopped being true (a restored database, say) a reader stalls instead of
        moving past an event it has not seen."""
        page = await self.select_notifications_page(
            start, limit, stop, topics, inclusive_of_start=inclusive_of_start
        )
        return page.events

    async def select_notifications_page(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> NotificationPage:
        """`select_notifications`, and whether the page stopped at an event still in flight: a
        follower then looks again soon, since that event's commit may come with no NOTIFY of
        its own for this reader (a transaction that holds the others back need not append)."""
        args: list[object] = []
        where = []
        if start is not None:
            args.append(start)
            where.append(f"position {'>=' if inclusive_of_start else '>'} ${len(args)}")
        if stop is not None:
            args.append(stop)
            where.append(f"position <= ${len(args)}")
        if topics:
            args.append(list(topics))
            where.append(f"topic = ANY(${len(args)}::text[])")
        args.append(limit)
        sql = (
            f"SELECT {_COLUMNS}, {_SETTLED} FROM events"
            f"{' WHERE ' + ' AND '.join(where) if where else ''}"
            f" ORDER BY position LIMIT ${len(args)}"
        )
        page: list[RecordedEvent] = []
        for row in await self.pool.fetch(sql, *args):
            if not row[-1]:
                return NotificationPage(page, held_back=True)
            page.append(_record(row))
        return NotificationPage(page, held_back=False)

    async def settled_head(self) -> int:
        """The highest position below which every event is settled (0 for an empty log): where
        a follower that wants only what comes next starts. It reads back from the head over the
        events still in flight only."""
        position: int = await self.pool.fetchval(
            f"SELECT coalesce(max(position), 0) FROM (SELECT position FROM events WHERE {_SETTLED}"
            " ORDER BY position DESC LIMIT 1) AS head"
        )
        return position

    async def select_subject_events(
        self,
        subject_id: UUID,
        *,
        gt: int,
        lte: int,
        limit: int,
        topics: Sequence[str] = (),
    ) -> list[RecordedEvent]:
        """One subject's events with `gt` < position <= `lte`, in position order. `lte` must be
        settled (at or below `settled_head`): then no event of the range can still commit, and
        paging through it misses nothing."""
        sql = (
            f"SELECT {_COLUMNS} FROM events"
            " WHERE subject_id = $1 AND position > $2 AND position <= $3"
        )
        args: list[object] = [subject_id, gt, lte]
        if topics:
            args.append(list(topics))
            sql += f" AND topic = ANY(${len(args)}::text[])"
        args.append(limit)
        sql += f" ORDER BY position LIMIT ${len(args)}"
        return [_record(row) for row in await self.pool.fetch(sql, *args)]

    async def select_committed(
        self, after: int, topics: Sequence[str], conn: Conn
    ) -> list[RecordedEvent]:
        """Every event committed after `after`, in position order, passing over any still in
        flight. Only for a reader that holds off those transactions' projection writes and will
        let them write on top of what it read (a rebuild switching over): any other reader
        uses `select_notifications`, which stops at the first event in flight."""
        sql = f"SELECT {_COLUMNS} FROM events WHERE position > $1"
        args: list[object] = [after]
        if topics:
            sql += " AND topic = ANY($2::text[])"
            args.append(list(topics))
        return [_record(row) for row in await conn.fetch(sql + " ORDER BY position", *args)]

    async def max_notification_id(self) -> int | None:
        position: int | None = await self.pool.fetchval("SELECT max(position) FROM events")
        return position

    # -- following ---------------------------------------------------------------------------

    def subscribe(
        self,
        gt: int | None = None,
        topics: Sequence[str] = (),
        *,
        page_size: int = 500,
        poll_interval: float = 1.0,
    ) -> Subscription:
        return Subscription(self, gt or 0, topics, page_size, poll_interval)

    def _notify(self) -> None:
        """Wake subscribers after a commit.

        One NOTIFY per commit would serialise every appending transaction on PostgreSQL's
        notification queue lock, held through the commit. Instead a background task sends one
        NOTIFY for however many commits happened since its last one, after a short debounce.
        """
        self._wake.set()
        if self._notifier is None or self._notifier.done():
            self._notifier = asyncio.get_running_loop().create_task(self._send_notifications())

    async def _send_notifications(self) -> None:
        while self._wake.is_set():
            await asyncio.sleep(NOTIFY_DEBOUNCE)
            self._wake.clear()
            try:
                await self.pool.execute("SELECT pg_notify($1, '')", self.channel)
            except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError):
                return  # subscribers also poll; a missed wake-up only delays them

    async def aclose(self) -> None:
        task = self._notifier
        if task is not None and not task.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(task), 5)

    # -- tracking ----------------------------------------------------------------------------

    async def insert_tracking(self, name: str, position: int, conn: Conn | None = None) -> None:
        """Record that consumer `name` has processed up to `position`; only forward."""
        moved = await (conn or self.pool).fetchval(
            "INSERT INTO tracking (name, position) VALUES ($1, $2)"
            " ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = now()"
            " WHERE tracking.position < excluded.position RETURNING true",
            name,
            position,
        )
        if not moved:
            raise TrackingConflict(name, position)

    async def max_tracking_id(self, name: str) -> int | None:
        position: int | None = await self.pool.fetchval(
            "SELECT position FROM tracking WHERE name = $1", name
        )
        return position


class Subscription:
    """Catch up from a position, then follow new events, woken by LISTEN/NOTIFY.

    It polls as well (every `poll_interval`, and sooner while newer events wait behind a
    transaction still in flight), so a lost notification only delays it.
    """

    def __init__(
        self,
        store: EventStore,
        after: int,
        topics: Sequence[str],
        page_size: int,
        poll_interval: float,
    ) -> None:
        self.store = store
        self.position = after
        self.topics = list(topics)
        self.page_size = page_size
        self.poll_interval = poll_interval
        self._wake = asyncio.Event()
        self._stopped = False
        self._listener: PoolConnectionProxy | None = None
        self._buffer: list[RecordedEvent] = []

    async def __aenter__(self) -> Subscription:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        if self._listener is None and not self._stopped:
            self._listener = await self.store.pool.acquire()
            await self._listener.add_listener(self.store.channel, self._on_notify)

    def _on_notify(self, *args: object) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()

    async def close(self) -> None:
        self.stop()
        listener, self._listener = self._listener, None
        if listener is not None:
            await asyncio.shield(self._release(listener))

    async def _release(self, listener: PoolConnectionProxy) -> None:
        try:
            await listener.remove_listener(self.store.channel, self._on_notify)
        finally:
            await self.store.pool.release(listener)

    def __aiter__(self) -> AsyncIterator[RecordedEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[RecordedEvent]:
        await self.start()
        while not self._stopped:
            self._wake.clear()
            page = await self.store.select_notifications(
                self.position, self.page_size, topics=self.topics, inclusive_of_start=False
            )
            for event in page:
                if self._stopped:
                    return
                self.position = event.position
                yield event
            if len(page) == self.page_size:
                continue
            timeout = self.poll_interval
            if await self._waiting_behind_in_flight():
                timeout = min(timeout, 0.02)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _waiting_behind_in_flight(self) -> bool:
        """True if committed events exist past our position that are not settled yet."""
        newer: bool = await self.store.pool.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM events WHERE position > $1 AND NOT ({_SETTLED}))",
            self.position,
        )
        return newer


def _check_batch(events: Sequence[NewEvent], expected: Mapping[UUID, int]) -> None:
    """Caller bugs, refused before the database is asked: a stream's events must carry the
    versions right after its expected one, and no event_id or (stream, version) may repeat."""
    following = dict(expected)
    seen_ids: set[UUID] = set()
    seen_versions: set[tuple[UUID, int]] = set()
    for event in events:
        if event.event_id in seen_ids:
            raise ValueError(f"event_id {event.event_id} appears twice in one batch")
        if (event.stream_id, event.version) in seen_versions:
            raise ValueError(f"stream {event.stream_id}: version {event.version} appears twice")
        seen_ids.add(event.event_id)
        seen_versions.add((event.stream_id, event.version))
        if event.stream_id not in following:
            continue
        if event.version != following[event.stream_id] + 1:
            raise ValueError(
                f"stream {event.stream_id}: version {event.version} does not follow"
                f" version {following[event.stream_id]}"
            )
        following[event.stream_id] = event.version
