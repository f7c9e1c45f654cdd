"""The agents' queue of conversations: one row per conversation with its status and since when,
so agents see the handoffs waiting longest first. No column is personal (the subject's id is
the log's pseudonym; no text, reason or agent is here). An asynchronous projection, like the
applications' queue: the runner follows the log, a rebuild makes the same rows.

Each row keeps the version of the last event it folded, so a page handled again after a crash
rolled its transaction back changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import msgspec
from eventsourcing.utils import get_topic

from aggregates.conversation import Conversation, Status
from continuity import cursors
from continuity.db import Conn, Queryable
from continuity.projection import Mode, Placement
from projections.envelope import Envelope
from projections.tables import Table

QUEUE = "conversation_queue"
TABLE = Table(
    QUEUE,
    (
        "CREATE TABLE {table} ("
        " conversation_id uuid PRIMARY KEY,"
        " subject_id uuid NOT NULL,"
        " medium text NOT NULL,"
        " status text NOT NULL,"
        " status_since timestamptz NOT NULL,"
        " started_at timestamptz NOT NULL,"
        " last_activity timestamptz NOT NULL,"
        " turns integer NOT NULL,"
        " version integer NOT NULL)",
        "CREATE INDEX ON {table} (status, status_since, conversation_id)",
        "CREATE INDEX ON {table} (subject_id)",
    ),
)
TOPICS = tuple(
    f"aggregates.conversation:Conversation.{name}"
    for name in (
        "Opened",
        "TurnAdded",
        "HandoffRequested",
        "HandoffAccepted",
        "Transferred",
        "Resolved",
        "Rated",
        "Reopened",
        "Imported",
        "TurnImported",
        "MovedTo",
    )
)
_STATUS: dict[type, Status] = {
    Conversation.HandoffRequested: "waiting",
    Conversation.HandoffAccepted: "with_agent",
    Conversation.Resolved: "resolved",
    Conversation.Reopened: "open",
    Conversation.MovedTo: "moved",
}


_TURNS = frozenset(get_topic(cls) for cls in (Conversation.TurnAdded, Conversation.TurnImported))
"""The topics of turns, which retention may expire (counted still, by topic)."""


@dataclass
class _Change:
    version: int
    last_activity: datetime
    turns: int = 0
    status: str | None = None
    status_since: datetime | None = None

    def apply(self, envelope: Envelope) -> None:
        self.version, self.last_activity = envelope.version, envelope.recorded_at
        event = envelope.event
        if isinstance(event, Conversation.TurnAdded | Conversation.TurnImported) or (
            envelope.expired and envelope.topic in _TURNS
        ):
            self.turns += 1
        status = _STATUS.get(type(event))
        if status is not None:
            self.status, self.status_since = status, envelope.recorded_at


@dataclass
class _Row:
    """A conversation opened in the page, and what the page did to it since."""

    conversation_id: UUID
    subject_id: UUID
    medium: str
    started_at: datetime
    change: _Change


@dataclass(frozen=True)
class ConversationQueue:
    name: str = QUEUE
    topics: tuple[str, ...] = TOPICS
    tables: tuple[Table, ...] = (TABLE,)
    mode: Mode = "async"
    version: int = 2
    """Version 2: conversations moved from a guest at sign-in, in the status they had there
    and since when (so a waiting one keeps its place), and the originals closed (`moved`)."""

    async def handle(self, conn: Conn, placement: Placement, envelopes: list[Envelope]) -> None:
        """Fold the page in memory, one row per conversation, then write it in two
        statements: the conversations opened in the page, and the changes to the others."""
        opened: dict[UUID, _Row] = {}
        changed: dict[UUID, _Change] = {}
        for envelope in envelopes:
            event = envelope.event
            if isinstance(event, Conversation.Opened):
                at = envelope.recorded_at
                opened[envelope.stream_id] = _Row(
                    envelope.stream_id,
                    envelope.subject_id,
                    event.medium,
                    at,
                    _Change(envelope.version, at, status="open", status_since=at),
                )
            elif isinstance(event, Conversation.Imported):
                opened[envelope.stream_id] = _Row(
                    envelope.stream_id,
                    envelope.subject_id,
                    event.medium,
                    event.started_at,
                    _Change(
                        envelope.version,
                        envelope.recorded_at,
                        status=event.status,
                        status_since=event.status_since,
                    ),
                )
            elif envelope.stream_id in opened:
                opened[envelope.stream_id].change.apply(envelope)
            else:
                change = changed.get(envelope.stream_id)
                if change is None:
                    change = changed[envelope.stream_id] = _Change(0, envelope.recorded_at)
                change.apply(envelope)
        table = placement[QUEUE]
        if opened:
            await conn.execute(_INSERT.format(table=table), *_columns(list(opened.values())))
        if changed:
            await conn.execute(_UPDATE.format(table=table), *_change_columns(changed))


_INSERT = (
    "INSERT INTO {table} (conversation_id, subject_id, medium, status, status_since,"
    " started_at, last_activity, turns, version)"
    " SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[],"
    " $5::timestamptz[], $6::timestamptz[], $7::timestamptz[], $8::int[], $9::int[])"
    " ON CONFLICT (conversation_id) DO NOTHING"
)
_UPDATE = (
    "UPDATE {table} q SET version = c.version, last_activity = c.last_activity,"
    " turns = q.turns + c.turns, status = coalesce(c.status, q.status),"
    " status_since = coalesce(c.status_since, q.status_since)"
    " FROM unnest($1::uuid[], $2::int[], $3::timestamptz[], $4::int[], $5::text[],"
    " $6::timestamptz[]) AS c(conversation_id, version, last_activity, turns, status,"
    " status_since)"
    " WHERE q.conversation_id = c.conversation_id AND q.version < c.version"
)


def _columns(rows: list[_Row]) -> list[list[Any]]:
    return [
        [r.conversation_id for r in rows],
        [r.subject_id for r in rows],
        [r.medium for r in rows],
        [r.change.status for r in rows],
        [r.change.status_since for r in rows],
        [r.started_at for r in rows],
        [r.change.last_activity for r in rows],
        [r.change.turns for r in rows],
        [r.change.version for r in rows],
    ]


def _change_columns(changes: dict[UUID, _Change]) -> list[list[Any]]:
    return [
        list(changes),
        [c.version for c in changes.values()],
        [c.last_activity for c in changes.values()],
        [c.turns for c in changes.values()],
        [c.status for c in changes.values()],
        [c.status_since for c in changes.values()],
    ]


MAX_PAGE = 100
Order = Literal["oldest", "newest"]


class QueueFilter(msgspec.Struct, frozen=True, kw_only=True):
    status: Status = "waiting"
    medium: str | None = None
    since: datetime | None = None
    """Only conversations in their status since this time or earlier (waiting that long)."""


class QueueRow(msgspec.Struct, frozen=True, gc=False):
    conversation_id: UUID
    subject_id: UUID
    medium: str
    status: str
    status_since: datetime
    started_at: datetime
    last_activity: datetime
    turns: int
    version: int


class QueuePage(msgspec.Struct, frozen=True, gc=False):
    rows: list[QueueRow]
    next_cursor: str | None


async def page(
    conn: Queryable,
    where: QueueFilter,
    *,
    limit: int = 20,
    order: Order = "oldest",
    cursor: str | None = None,
) -> QueuePage:
    """One page of the conversations in `where.status`, by how long they have been in it
    (longest first unless `newest`), after `cursor` (the previous page's `next_cursor`)."""
    args: list[object] = [where.status]
    conditions = ["status = $1"]
    if where.medium is not None:
        args.append(where.medium)
        conditions.append(f"medium = ${len(args)}")
    if where.since is not None:
        args.append(where.since)
        conditions.append(f"status_since <= ${len(args)}")
    if cursor is not None:
        args.extend(cursors.decode(cursor, tuple[datetime, UUID]))
        sign = ">" if order == "oldest" else "<"
        conditions.append(
            f"(status_since, conversation_id) {sign} (${len(args) - 1}, ${len(args)})"
        )
    direction = "ASC" if order == "oldest" else "DESC"
    size = min(max(limit, 1), MAX_PAGE)
    args.append(size + 1)  # one more than asked: whether there is a next page
    sql = (
        f"SELECT {', '.join(QueueRow.__struct_fields__)} FROM {QUEUE}"
        f" WHERE {' AND '.join(conditions)}"
        f" ORDER BY status_since {direction}, conversation_id {direction} LIMIT ${len(args)}"
    )
    found = [QueueRow(**dict(r)) for r in await conn.fetch(sql, *args)]
    rows = found[:size]
    more = len(found) > len(rows)
    last = rows[-1] if more and rows else None
    return QueuePage(
        rows, None if last is None else cursors.encode([last.status_since, last.conversation_id])
    )
