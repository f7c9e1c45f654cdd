"""The agents' work queue of applications: one row per application, every column clear for
filtering and none of them personal (the subject's id is the log's pseudonym; no answer is
here). An asynchronous projection: the runner follows the log from its checkpoint
(`continuity.runner`), and a rebuild builds the same rows from the whole log.

Each row keeps the version of the last event it folded, so an event met twice (a page handled
again after a crash rolled its transaction back) changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import msgspec

from aggregates.application import Application
from continuity import cursors
from continuity.db import Conn, Queryable
from continuity.projection import Mode, Placement
from projections.envelope import Envelope
from projections.tables import Table

QUEUE = "application_queue"
TABLE = Table(
    QUEUE,
    (
        "CREATE TABLE {table} ("
        " application_id uuid PRIMARY KEY,"
        " subject_id uuid NOT NULL,"
        " form_type text NOT NULL,"
        " form_version integer NOT NULL,"
        " status text NOT NULL,"
        " current_step text,"
        " channel text NOT NULL,"
        " started_at timestamptz NOT NULL,"
        " last_activity timestamptz NOT NULL,"
        " version integer NOT NULL)",
        "CREATE INDEX ON {table} (last_activity DESC, application_id DESC)",
        "CREATE INDEX ON {table} (status, last_activity DESC)",
        "CREATE INDEX ON {table} (subject_id)",
    ),
)
TOPICS = tuple(
    f"aggregates.application:Application.{name}"
    for name in (
        "Started",
        "DraftSaved",
        "StepCompleted",
        "SteppedBack",
        "Submitted",
        "Withdrawn",
        "ExpiredIdle",
        "Imported",
        "MovedTo",
    )
)
_STATUS: dict[type, str] = {
    Application.Submitted: "submitted",
    Application.Withdrawn: "withdrawn",
    Application.ExpiredIdle: "expired",
    Application.MovedTo: "moved",
}


@dataclass(frozen=True)
class ApplicationQueue:
    name: str = QUEUE
    topics: tuple[str, ...] = TOPICS
    tables: tuple[Table, ...] = (TABLE,)
    mode: Mode = "async"
    version: int = 2
    """Version 2: applications moved from a guest at sign-in (`Imported`, `MovedTo`)."""

    async def handle(self, conn: Conn, placement: Placement, envelopes: list[Envelope]) -> None:
        """Fold the page in memory, one row per application, then write them in two
        statements: the applications started in the page, and the changes to the others."""
        started: dict[UUID, _Row] = {}
        changed: dict[UUID, _Change] = {}
        for envelope in envelopes:
            event = envelope.event
            if isinstance(event, Application.Started | Application.Imported):
                started[envelope.stream_id] = _Row(envelope, event)
                continue
            change = _change_of(event)
            if change is None:
                continue
            row = started.get(envelope.stream_id)
            if row is not None:
                row.apply(envelope, change)
            else:
                changed.setdefault(envelope.stream_id, _Change()).apply(envelope, change)
        table = placement[QUEUE]
        if started:
            await conn.execute(_INSERT.format(table=table), *_columns(list(started.values())))
        if changed:
            await conn.execute(_UPDATE.format(table=table), *_change_columns(list(changed.items())))


_KEEP = object()
"""A step or status an event leaves as it is."""


def _change_of(event: object) -> tuple[object, object] | None:
    """(current step, status) an event sets, `_KEEP` for what it leaves; None: not ours."""
    if isinstance(event, Application.DraftSaved):
        return _KEEP, _KEEP
    if isinstance(event, Application.StepCompleted):
        return event.next_step, _KEEP
    if isinstance(event, Application.SteppedBack):
        return event.step, _KEEP
    status = _STATUS.get(type(event))
    return None if status is None else (None, status)


@dataclass
class _Change:
    version: int = 0
    channel: str = ""
    last_activity: datetime | None = None
    step_set: bool = False
    step: str | None = None
    status: str | None = None

    def apply(self, envelope: Envelope, change: tuple[object, object]) -> None:
        step, status = change
        self.version, self.channel = envelope.version, envelope.channel
        self.last_activity = envelope.recorded_at
        if step is not _KEEP:
            self.step_set, self.step = True, step  # type: ignore[assignment]
        if status is not _KEEP:
            self.status = status  # type: ignore[assignment]


class _Row(_Change):
    """An application started in the page (or moved here from a guest: at the step it was at,
    started when the original was)."""

    def __init__(
        self, envelope: Envelope, event: Application.Started | Application.Imported
    ) -> None:
        step: str | None = event.form.steps[0].name
        started: datetime | None = None
        if isinstance(event, Application.Imported):
            step, started = event.current, event.started_at
        super().__init__(envelope.version, envelope.channel, envelope.recorded_at, True, step)
        self.application_id = envelope.stream_id
        self.subject_id = envelope.subject_id
        self.form_type = event.form.type
        self.form_version = event.form.version
        self.started_at = started or envelope.recorded_at
        self.status = "in_progress"


_INSERT = (
    "INSERT INTO {table} (application_id, subject_id, form_type, form_version, status,"
    " current_step, channel, started_at, last_activity, version)"
    " SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::int[], $5::text[],"
    " $6::text[], $7::text[], $8::timestamptz[], $9::timestamptz[], $10::int[])"
    " ON CONFLICT (application_id) DO NOTHING"
)
_UPDATE = (
    "UPDATE {table} q SET version = c.version, channel = c.channel,"
    " last_activity = c.last_activity,"
    " current_step = CASE WHEN c.step_set THEN c.step ELSE q.current_step END,"
    " status = coalesce(c.status, q.status)"
    " FROM unnest($1::uuid[], $2::int[], $3::text[], $4::timestamptz[], $5::bool[],"
    " $6::text[], $7::text[]) AS c(application_id, version, channel, last_activity, step_set,"
    " step, status)"
    " WHERE q.application_id = c.application_id AND q.version < c.version"
)


def _columns(rows: list[_Row]) -> list[list[Any]]:
    return [
        [r.application_id for r in rows],
        [r.subject_id for r in rows],
        [r.form_type for r in rows],
        [r.form_version for r in rows],
        [r.status for r in rows],
        [r.step for r in rows],
        [r.channel for r in rows],
        [r.started_at for r in rows],
        [r.last_activity for r in rows],
        [r.version for r in rows],
    ]


def _change_columns(changes: list[tuple[UUID, _Change]]) -> list[list[Any]]:
    return [
        [a for a, _ in changes],
        [c.version for _, c in changes],
        [c.channel for _, c in changes],
        [c.last_activity for _, c in changes],
        [c.step_set for _, c in changes],
        [c.step for _, c in changes],
        [c.status for _, c in changes],
    ]


Order = Literal["recent", "oldest"]
MAX_PAGE = 100


class QueueFilter(msgspec.Struct, frozen=True, kw_only=True):
    status: str | None = None
    form_type: str | None = None
    current_step: str | None = None
    channel: str | None = None
    idle_since: datetime | None = None
    """Only applications whose last activity is at or before this time."""


class QueueRow(msgspec.Struct, frozen=True, gc=False):
    application_id: UUID
    subject_id: UUID
    form_type: str
    form_version: int
    status: str
    current_step: str | None
    channel: str
    started_at: datetime
    last_activity: datetime
    version: int


class QueuePage(msgspec.Struct, frozen=True, gc=False):
    rows: list[QueueRow]
    next_cursor: str | None


def _cursor(row: QueueRow) -> str:
    return cursors.encode([row.last_activity, row.application_id])


async def page(
    conn: Queryable,
    where: QueueFilter,
    *,
    limit: int = 20,
    order: Order = "recent",
    cursor: str | None = None,
) -> QueuePage:
    """One page of the queue, in order of last activity (most recent first unless `oldest`),
    after `cursor` (the previous page's `next_cursor`)."""
    conditions: list[str] = []
    args: list[object] = []

    def given(sql: str, value: object) -> None:
        args.append(value)
        conditions.append(sql.format(f"${len(args)}"))

    for column in ("status", "form_type", "current_step", "channel"):
        value = getattr(where, column)
        if value is not None:
            given(f"{column} = {{}}", value)
    if where.idle_since is not None:
        given("last_activity <= {}", where.idle_since)
    if cursor is not None:
        at, application = cursors.decode(cursor, tuple[datetime, UUID])
        args.extend([at, application])
        sign = "<" if order == "recent" else ">"
        conditions.append(
            f"(last_activity, application_id) {sign} (${len(args) - 1}, ${len(args)})"
        )
    direction = "DESC" if order == "recent" else "ASC"
    size = min(max(limit, 1), MAX_PAGE)
    args.append(size + 1)  # one more than asked: whether there is a next page
    sql = (
        f"SELECT {', '.join(QueueRow.__struct_fields__)} FROM {QUEUE}"
        + (" WHERE " + " AND ".join(conditions) if conditions else "")
        + f" ORDER BY last_activity {direction}, application_id {direction} LIMIT ${len(args)}"
    )
    found = [QueueRow(**dict(r)) for r in await conn.fetch(sql, *args)]
    rows = found[:size]
    more = len(found) > len(rows)
    return QueuePage(rows, _cursor(rows[-1]) if more and rows else None)
