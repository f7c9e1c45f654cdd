"""The agents' work queue of applications: one row per application, every column clear for
filtering and none of them personal (the subject's id is the log's pseudonym; no answer is
here). An asynchronous projection: the runner follows the log from its checkpoint
(`continuity.runner`), and a rebuild builds the same rows from the whole log.

Each row keeps the version of the last event it folded, so an event met twice (a page handled
again after a crash rolled its transaction back) changes nothing.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import msgspec

from aggregates.application import Application
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
    )
)
_STATUS: dict[type, str] = {
    Application.Submitted: "submitted",
    Application.Withdrawn: "withdrawn",
    Application.ExpiredIdle: "expired",
}


@dataclass(frozen=True)
class ApplicationQueue:
    name: str = QUEUE
    topics: tuple[str, ...] = TOPICS
    tables: tuple[Table, ...] = (TABLE,)
    mode: Mode = "async"
    version: int = 1

    async def handle(self, conn: Conn, placement: Placement, envelopes: list[Envelope]) -> None:
        table = placement[QUEUE]
        for envelope in envelopes:
            statement, args = _change(table, envelope)
            if statement:
                await conn.execute(statement, *args)


def _change(table: str, envelope: Envelope) -> tuple[str, list[Any]]:
    """The statement that folds one event into its application's row."""
    event = envelope.event
    touched = [envelope.stream_id, envelope.version, envelope.channel, envelope.recorded_at]
    later = "WHERE application_id = $1 AND version < $2"
    if isinstance(event, Application.Started):
        return (
            f"INSERT INTO {table} (application_id, version, channel, last_activity, started_at,"
            " subject_id, form_type, form_version, status, current_step)"
            " VALUES ($1, $2, $3, $4, $4, $5, $6, $7, 'in_progress', $8)"
            " ON CONFLICT (application_id) DO NOTHING",
            [
                *touched,
                envelope.subject_id,
                event.form.type,
                event.form.version,
                event.form.steps[0].name,
            ],
        )
    moved = f"UPDATE {table} SET version = $2, channel = $3, last_activity = $4"
    if isinstance(event, Application.DraftSaved):
        return f"{moved} {later}", touched
    if isinstance(event, Application.StepCompleted):
        return (
            f"{moved}, current_step = $5 {later}",
            [*touched, event.next_step],
        )
    if isinstance(event, Application.SteppedBack):
        return f"{moved}, current_step = $5 {later}", [*touched, event.step]
    status = _STATUS.get(type(event))
    if status is not None:
        return f"{moved}, status = $5, current_step = NULL {later}", [*touched, status]
    return "", []


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


class BadCursor(ValueError):
    """A cursor this queue did not hand out."""


def _cursor(row: QueueRow) -> str:
    raw = msgspec.json.encode([row.last_activity, row.application_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _position(cursor: str) -> tuple[datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return msgspec.json.decode(raw, type=tuple[datetime, UUID])
    except (ValueError, msgspec.DecodeError):
        raise BadCursor("the cursor is not one this queue gave") from None


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
        at, application = _position(cursor)
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
