"""Group commit: the appends of concurrent requests gathered into one call of `append_group`
(migration 0008) and one commit, each request answered on its own once that commit is done.

No timer: a request that finds a slot free leaves at the end of the event loop's current turn,
with every other request made ready in that turn; requests that arrive while `max_in_flight`
groups are in flight wait and leave together once a slot frees. A lone client pays one turn of
the loop; under load each commit carries many requests. The requests waiting are shared among
the free slots, so that two groups overlap (one in the database while the callers of the other
prepare their next appends) rather than every caller moving in lockstep with one group. Two
requests on one stream or one view row never share a group (the later waits for the next), and
a group the database refuses as a whole (an event id racing another transaction's, a view row
moved by a rebuild's switch-over) is committed again one request at a time, so a refusal
answers only its own request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from uuid import UUID

import asyncpg
import msgspec

from continuity.errors import ConcurrencyConflict, DuplicateEvent, SubjectErased, ViewMoved

if TYPE_CHECKING:
    from continuity.store import NewEvent

log = logging.getLogger("continuity.store")

MAX_REQUESTS = 256
MAX_EVENTS = 5_000
MAX_IN_FLIGHT = 2
"""Groups in flight at once: one being written while the next fills, and a second commit
overlapping the first's flush to disk."""

_SQL = (
    "SELECT outcomes, positions FROM append_group($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,"
    " $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27)"
)


class ViewWrite(msgspec.Struct, frozen=True, gc=False):
    """A sealed row of an inline subject view, to write with the events; `revision` is the
    row's xmin when it was read (None: there was no row), and the write is refused if the row
    has changed since."""

    table: str
    subject_id: UUID
    revision: int | None
    key_version: int
    body: bytes


class SnapshotWrite(msgspec.Struct, frozen=True, gc=False):
    """A sealed snapshot of an aggregate at `version`, to write with the events."""

    stream_id: UUID
    subject_id: UUID
    version: int
    fingerprint: str
    key_version: int
    state: bytes


@dataclass(eq=False)
class _Request:
    events: Sequence[NewEvent]
    expected: Mapping[UUID, int]
    views: Sequence[ViewWrite]
    snapshots: Sequence[SnapshotWrite]
    answer: asyncio.Future[list[int]]
    streams: frozenset[UUID] = field(init=False)
    rows: frozenset[tuple[str, UUID]] = field(init=False)

    def __post_init__(self) -> None:
        self.streams = frozenset(e.stream_id for e in self.events)
        self.rows = frozenset((v.table, v.subject_id) for v in self.views)


class GroupCommitter:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        max_requests: int = MAX_REQUESTS,
        max_events: int = MAX_EVENTS,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self.pool = pool
        self.max_requests = max_requests
        self.max_events = max_events
        self.max_in_flight = max_in_flight
        self._waiting: list[_Request] = []
        self._in_flight = 0
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.groups = 0
        """Groups committed so far (for tests and metrics)."""

    async def commit(
        self,
        events: Sequence[NewEvent],
        expected: Mapping[UUID, int],
        views: Sequence[ViewWrite] = (),
        snapshots: Sequence[SnapshotWrite] = (),
    ) -> list[int]:
        """The positions of `events` once committed. Refused: ConcurrencyConflict,
        SubjectErased, DuplicateEvent (an event id is in the log: the caller tells a retry from
        a reuse), ViewMoved; any other error of the database as it was raised."""
        answer: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Request(events, expected, views, snapshots, answer))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._start)
        return await answer

    def _start(self) -> None:
        self._scheduled = False
        while self._waiting and self._in_flight < self.max_in_flight:
            free = self.max_in_flight - self._in_flight
            group = self._take(-(-len(self._waiting) // free))  # a fair share of the slots
            if not group:
                return
            self._in_flight += 1
            task = asyncio.get_running_loop().create_task(self._flush(group))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _take(self, share: int) -> list[_Request]:
        """The next group, in arrival order, of at most `share` requests; a request colliding
        with one taken waits."""
        group: list[_Request] = []
        streams: set[UUID] = set()
        rows: set[tuple[str, UUID]] = set()
        events = 0
        left: list[_Request] = []
        for request in self._waiting:
            if request.answer.done():  # its caller was cancelled before it left
                continue
            fits = len(group) < min(share, self.max_requests) and (
                not group or events + len(request.events) <= self.max_events
            )
            if fits and not (request.streams & streams or request.rows & rows):
                group.append(request)
                streams |= request.streams
                rows |= request.rows
                events += len(request.events)
            else:
                left.append(request)
        self._waiting = left
        return group

    async def _flush(self, group: list[_Request]) -> None:
        try:
            await self._write(group)
        finally:
            self._in_flight -= 1
            self._start()

    async def _write(self, group: list[_Request]) -> None:
        try:
            async with self.pool.acquire() as conn:
                (row,) = await conn.fetch(_SQL, *_arguments(group))
        except asyncpg.PostgresError as exc:
            if len(group) > 1:
                log.info(
                    "a group of %d was refused whole (%s); committing each alone",
                    len(group),
                    exc.sqlstate,
                )
                await asyncio.gather(*(self._write([request]) for request in group))
                return
            _answer(group[0], exc=_refusal(group[0], exc))
            return
        except BaseException as exc:
            for request in group:
                _answer(request, exc=exc)
            if not isinstance(exc, Exception):
                raise
            return
        self.groups += 1
        outcomes, positions = row
        at = 0
        for index, request in enumerate(group):
            mine = positions[at : at + len(request.events)]
            at += len(request.events)
            outcome = outcomes[index]
            if outcome is None:
                _answer(request, positions=list(mine))
            else:
                _answer(request, exc=_outcome(request, outcome))


def _answer(
    request: _Request, *, positions: list[int] | None = None, exc: BaseException | None = None
) -> None:
    if request.answer.done():
        return
    if exc is not None:
        request.answer.set_exception(exc)
    else:
        request.answer.set_result(positions or [])


def _arguments(group: Sequence[_Request]) -> list[list[object]]:
    events = [(n, e) for n, r in enumerate(group, 1) for e in r.events]
    expected = [(n, s, v) for n, r in enumerate(group, 1) for s, v in r.expected.items()]
    views = [(n, v) for n, r in enumerate(group, 1) for v in r.views]
    snaps = [(n, s) for n, r in enumerate(group, 1) for s in r.snapshots]
    return [
        [n for n, _ in events],
        [e.stream_id for _, e in events],
        [e.version for _, e in events],
        [e.event_id for _, e in events],
        [e.subject_id for _, e in events],
        [e.topic for _, e in events],
        [e.channel for _, e in events],
        [e.recorded_at for _, e in events],
        [e.key_version for _, e in events],
        [e.digest for _, e in events],
        [e.payload for _, e in events],
        [n for n, _, _ in expected],
        [s for _, s, _ in expected],
        [v for _, _, v in expected],
        [n for n, _ in views],
        [v.table for _, v in views],
        [v.subject_id for _, v in views],
        [v.revision for _, v in views],
        [v.key_version for _, v in views],
        [v.body for _, v in views],
        [n for n, _ in snaps],
        [s.stream_id for _, s in snaps],
        [s.subject_id for _, s in snaps],
        [s.version for _, s in snaps],
        [s.fingerprint for _, s in snaps],
        [s.key_version for _, s in snaps],
        [s.state for _, s in snaps],
    ]


def _outcome(request: _Request, outcome: str) -> Exception:
    """The error a refused request's outcome (see append_group) stands for."""
    code, _, detail = outcome.partition(" ")
    if code == "CY409":
        stream, actual = detail.split()
        wanted = expected_version(UUID(stream), request.events, request.expected)
        return ConcurrencyConflict(UUID(stream), wanted, int(actual))
    if code == "CY410":
        return SubjectErased(UUID(detail))
    if code == "CY412":
        table, subject = detail.split()
        return ViewMoved(table, UUID(subject))
    return DuplicateEvent([e.event_id for e in request.events])


def _refusal(request: _Request, exc: asyncpg.PostgresError) -> Exception:
    """What a request's own refusal, raised by the database, means for it."""
    if isinstance(exc, asyncpg.UniqueViolationError) and (
        exc.constraint_name == "events_event_id_key"
    ):
        return DuplicateEvent([e.event_id for e in request.events])
    if exc.sqlstate == "CY412":
        return ViewMoved(str(exc.detail or ""), None)
    return exc


def expected_version(
    stream_id: UUID, events: Sequence[NewEvent], expected: Mapping[UUID, int]
) -> int:
    """The version a batch expected `stream_id` to be at."""
    if stream_id in expected:
        return expected[stream_id]
    return min(e.version for e in events if e.stream_id == stream_id) - 1
