"""The customer timeline: one chronological, cross-channel list per customer of what happened in
their carts, applications, conversations and activity, one row per event, in log order.

An asynchronous projection (`continuity.runner` follows the log from its checkpoint, and a
rebuild builds the same rows from the whole log): a change appears here once the runner has
applied it, usually well within a second of the append.

Each row keeps clear only what orders and filters it, none of it personal: the subject's
pseudonymous id, the log position (the row's key: a page handled twice writes nothing twice),
the time, the kind (`cart.item_added`), the channel, the stream and its version. What it says
(the device, the actor, and a short summary of what happened) is sealed with the subject's key
(`key_version`), bound by the associated data to the row's clear columns, so a body moved to
another row, or a row whose kind or time was changed, fails to open. Once the subject is erased
their key is gone: erasure deletes the rows, and any row it could not reach stays unreadable
(a read raises SubjectErased).

The summary names what changed, not every value: a cart line's sku, name and quantity; an
application's form, step and the names of the fields saved, never the answers (the agent opens
the application itself, audited, to read those); a conversation turn's author, medium, its text
up to `MAX_SUMMARY_TEXT` characters (the conversation holds the whole turn) and its attachments'
references; a handoff's reason, the agents, the rating; a product viewed (sku, name), a search's
query, a screen (and its step), a personalization choice. A guest's cart merged, or application
or conversation moved, at sign-in shows on both sides: the guest's says where it went, the
customer's where it came from (a moved conversation's turns are not repeated one by one: they
are the guest's entries, and the conversation's transcript).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, get_args
from uuid import UUID

import msgspec
from eventsourcing.utils import get_topic

from aggregates.activity import Activity
from aggregates.application import Application
from aggregates.cart import Cart
from aggregates.conversation import Conversation
from continuity.cursors import BadCursor
from continuity.db import Conn, Queryable
from continuity.errors import IntegrityViolation, SubjectErased
from continuity.projection import Mode, Placement
from privacy.cipher import DecryptionFailed, SubjectKey, row_aad, seal, unseal
from privacy.vault import KeyVault
from projections.envelope import Envelope
from projections.tables import Table

TIMELINE = "timeline"
TABLE = Table(
    TIMELINE,
    (
        "CREATE TABLE {table} ("
        " position bigint PRIMARY KEY,"
        " subject_id uuid NOT NULL,"
        " occurred_at timestamptz NOT NULL,"
        " kind text NOT NULL,"
        " channel text NOT NULL,"
        " stream text NOT NULL,"
        " stream_id uuid NOT NULL,"
        " version integer NOT NULL,"
        " key_version integer NOT NULL,"
        " body bytea NOT NULL)",
        "CREATE INDEX ON {table} (subject_id, position DESC)",
    ),
)

MAX_SUMMARY_TEXT = 500
"""The characters of a turn's text a timeline entry keeps (`text_truncated` says it was cut)."""
MAX_PAGE = 100

Stream = Literal["cart", "application", "conversation", "activity"]
Kind = Literal[
    "cart.item_added",
    "cart.quantity_changed",
    "cart.item_removed",
    "cart.checked_out",
    "cart.lines_merged",
    "cart.merged_into",
    "application.started",
    "application.draft_saved",
    "application.step_completed",
    "application.stepped_back",
    "application.submitted",
    "application.withdrawn",
    "application.expired",
    "application.imported",
    "application.moved",
    "conversation.opened",
    "conversation.turn_added",
    "conversation.handoff_requested",
    "conversation.handoff_accepted",
    "conversation.transferred",
    "conversation.resolved",
    "conversation.rated",
    "conversation.reopened",
    "conversation.imported",
    "conversation.moved",
    "activity.product_viewed",
    "activity.searched",
    "activity.screen_shown",
    "activity.personalization_set",
]
KindFilter = Kind | Stream
"""What a reader filters kinds by: a kind, or a stream for all of its kinds."""
STREAMS: frozenset[str] = frozenset(get_args(Stream))
KINDS: tuple[str, ...] = get_args(Kind)
Order = Literal["newest", "oldest"]


class AttachmentRef(msgspec.Struct, frozen=True, omit_defaults=True, gc=False):
    """An attachment of a turn, by reference (the file is never here)."""

    reference: str
    content_type: str
    name: str | None = None


class Summary(msgspec.Struct, frozen=True, omit_defaults=True, kw_only=True, gc=False):
    """What happened, in the fields that apply to the kind (the others are left out)."""

    sku: str | None = None
    name: str | None = None
    """The cart item's name."""
    quantity: int | None = None
    total: Decimal | None = None
    """A checkout's total, in the cart's currency."""
    form_type: str | None = None
    form_version: int | None = None
    step: str | None = None
    fields: list[str] | None = None
    """The names of the fields a draft saved or a completed step holds (never their values)."""
    next_step: str | None = None
    author: str | None = None
    author_id: str | None = None
    medium: str | None = None
    text: str | None = None
    text_truncated: bool = False
    subject: str | None = None
    """An email's subject line."""
    attachments: list[AttachmentRef] | None = None
    reason: str | None = None
    requested_by: str | None = None
    agent_id: str | None = None
    from_agent: str | None = None
    to_agent: str | None = None
    by: str | None = None
    rating: int | None = None
    moved_from: UUID | None = None
    """What a merge or move brought here: the guest's cart, application or conversation."""
    moved_to: UUID | None = None
    """Where a merge or move took it: the signed-in customer's cart, application or
    conversation."""
    lines: int | None = None
    """Cart lines a merge moved."""
    query: str | None = None
    results: int | None = None
    screen: str | None = None
    allowed: bool | None = None
    """A personalization choice: allowed (true) or refused (false)."""


class _Body(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """The sealed part of a row."""

    device: str | None
    actor_type: str
    actor_id: str | None
    summary: Summary


def _turn(event: Any) -> Summary:
    text: str = event.text
    return Summary(
        author=event.author,
        author_id=event.author_id,
        medium=event.medium,
        text=text[:MAX_SUMMARY_TEXT],
        text_truncated=len(text) > MAX_SUMMARY_TEXT,
        subject=event.subject,
        attachments=[AttachmentRef(a.reference, a.content_type, a.name) for a in event.attachments]
        or None,
    )


_NOTHING = Summary()
_FOLDS: dict[type, tuple[Stream, Kind, Callable[[Any], Summary]]] = {
    Cart.ItemAdded: (
        "cart",
        "cart.item_added",
        lambda e: Summary(sku=e.sku, name=e.name, quantity=e.quantity),
    ),
    Cart.QuantityChanged: (
        "cart",
        "cart.quantity_changed",
        lambda e: Summary(sku=e.sku, quantity=e.quantity),
    ),
    Cart.ItemRemoved: ("cart", "cart.item_removed", lambda e: Summary(sku=e.sku)),
    Cart.CheckedOut: ("cart", "cart.checked_out", lambda e: Summary(total=e.total)),
    Cart.LinesMerged: (
        "cart",
        "cart.lines_merged",
        lambda e: Summary(
            moved_from=e.from_cart,
            lines=len(e.lines),
            quantity=sum(line.quantity for line in e.lines),
        ),
    ),
    Cart.MergedInto: (
        "cart",
        "cart.merged_into",
        lambda e: Summary(moved_to=e.into, lines=e.moved),
    ),
    Application.Started: (
        "application",
        "application.started",
        lambda e: Summary(
            form_type=e.form.type, form_version=e.form.version, step=e.form.steps[0].name
        ),
    ),
    Application.DraftSaved: (
        "application",
        "application.draft_saved",
        lambda e: Summary(step=e.step, fields=sorted(e.values)),
    ),
    Application.StepCompleted: (
        "application",
        "application.step_completed",
        lambda e: Summary(step=e.step, fields=sorted(e.values), next_step=e.next_step),
    ),
    Application.SteppedBack: (
        "application",
        "application.stepped_back",
        lambda e: Summary(step=e.step),
    ),
    Application.Submitted: ("application", "application.submitted", lambda e: _NOTHING),
    Application.Withdrawn: ("application", "application.withdrawn", lambda e: _NOTHING),
    Application.ExpiredIdle: ("application", "application.expired", lambda e: _NOTHING),
    Application.Imported: (
        "application",
        "application.imported",
        lambda e: Summary(
            form_type=e.form.type,
            form_version=e.form.version,
            step=e.current,
            fields=sorted({name for values in e.completed.values() for name in values}),
            moved_from=e.moved_from,
        ),
    ),
    Application.MovedTo: ("application", "application.moved", lambda e: Summary(moved_to=e.to)),
    Conversation.Imported: (
        "conversation",
        "conversation.imported",
        lambda e: Summary(medium=e.medium, reason=e.handoff_reason, moved_from=e.moved_from),
    ),
    Conversation.MovedTo: (
        "conversation",
        "conversation.moved",
        lambda e: Summary(moved_to=e.to),
    ),
    Conversation.Opened: (
        "conversation",
        "conversation.opened",
        lambda e: Summary(medium=e.medium),
    ),
    Conversation.TurnAdded: ("conversation", "conversation.turn_added", _turn),
    Conversation.HandoffRequested: (
        "conversation",
        "conversation.handoff_requested",
        lambda e: Summary(reason=e.reason, requested_by=e.requested_by),
    ),
    Conversation.HandoffAccepted: (
        "conversation",
        "conversation.handoff_accepted",
        lambda e: Summary(agent_id=e.agent_id),
    ),
    Conversation.Transferred: (
        "conversation",
        "conversation.transferred",
        lambda e: Summary(from_agent=e.from_agent, to_agent=e.to_agent),
    ),
    Conversation.Resolved: (
        "conversation",
        "conversation.resolved",
        lambda e: Summary(by=e.by),
    ),
    Conversation.Rated: (
        "conversation",
        "conversation.rated",
        lambda e: Summary(rating=e.rating),
    ),
    Conversation.Reopened: (
        "conversation",
        "conversation.reopened",
        lambda e: Summary(by=e.by),
    ),
    Activity.ProductViewed: (
        "activity",
        "activity.product_viewed",
        lambda e: Summary(sku=e.sku, name=e.name),
    ),
    Activity.Searched: (
        "activity",
        "activity.searched",
        lambda e: Summary(query=e.query, results=e.results),
    ),
    Activity.ScreenShown: (
        "activity",
        "activity.screen_shown",
        lambda e: Summary(screen=e.screen, step=e.step),
    ),
    Activity.PersonalizationSet: (
        "activity",
        "activity.personalization_set",
        lambda e: Summary(allowed=e.allowed),
    ),
}
TOPICS = tuple(get_topic(cls) for cls in _FOLDS)

_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(_Body)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _aad(
    subject_id: UUID,
    position: int,
    stream_id: UUID,
    version: int,
    kind: str,
    channel: str,
    occurred_at: datetime,
) -> bytes:
    """Binds a body to its row: its subject and every clear column."""
    micros = (occurred_at - _EPOCH) // _MICROSECOND
    row = f"{position}/{stream_id.hex}/{version}/{kind}/{channel}/{micros}"
    return row_aad(TIMELINE, subject_id, row)


class TimelineEntry(msgspec.Struct, frozen=True, gc=False):
    """One row, opened."""

    position: int
    occurred_at: datetime
    kind: str
    channel: str
    stream: str
    stream_id: UUID
    version: int
    device: str | None
    actor_type: str
    actor_id: str | None
    summary: Summary


class TimelinePage(msgspec.Struct, frozen=True, gc=False):
    entries: list[TimelineEntry]
    next_cursor: str | None


class TimelineFilter(msgspec.Struct, frozen=True, kw_only=True):
    """Entries on any of `channels` (all, if empty) whose kind is one of `kinds` or belongs to
    one of the streams in it (all, if empty): `{"conversation", "cart.checked_out"}`."""

    channels: frozenset[str] = frozenset()
    kinds: frozenset[str] = frozenset()


CURSOR_PATTERN = r"^[0-9a-z]{1,13}$"
"""Every cursor matches it, and every string that matches it is one (a log position in base 36,
up to a bigint's largest): a client treats it as opaque, and one it made up only names a place
in the reader's own timeline."""
_CURSOR = re.compile(CURSOR_PATTERN)
_LAST = 2**63 - 1


def _cursor(position: int) -> str:
    digits = ""
    while True:
        position, digit = divmod(position, 36)
        digits = _DIGITS[digit] + digits
        if not position:
            return digits


_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def _after(cursor: str) -> int:
    if _CURSOR.fullmatch(cursor) is None:
        raise BadCursor("the cursor is not one this timeline gave")
    return min(int(cursor, 36), _LAST)


@dataclass(frozen=True)
class Timeline:
    """The projection, and the reads of its rows (`page`)."""

    vault: KeyVault
    name: str = TIMELINE
    topics: tuple[str, ...] = TOPICS
    tables: tuple[Table, ...] = (TABLE,)
    mode: Mode = "async"
    version: int = 3
    """Version 2: a guest's cart merged and applications and conversations moved at sign-in,
    on both sides. Version 3: the activity's events."""

    async def handle(self, conn: Conn, placement: Placement, envelopes: list[Envelope]) -> None:
        """Seal one row per event and write the page in one statement; rows already there
        (a page handled again) are left as they are. The subjects' key locks are held, as an
        append holds them, so an erasure either went before (its subjects are skipped) or
        waits for this page, then deletes what it wrote."""
        folded = [(e, _FOLDS[type(e.event)]) for e in envelopes if type(e.event) in _FOLDS]
        if not folded:
            return
        subjects = {envelope.subject_id for envelope, _ in folded}
        await self.vault.hold_off_erasure(conn, subjects)
        erased = await self.vault.erased_among(subjects, conn)
        keys = await self.vault.keys_for_reading(
            ((e.subject_id, e.key_version) for e, _ in folded if e.subject_id not in erased), conn
        )
        rows: list[tuple[Any, ...]] = []
        for envelope, (stream, kind, summarize) in folded:
            if envelope.subject_id in erased:
                continue
            key = keys.get((envelope.subject_id, envelope.key_version))
            if key is None:
                raise IntegrityViolation(f"the timeline of subject {envelope.subject_id}: no key")
            meta = envelope.meta
            assert meta is not None  # only an erased placeholder has none
            body = _ENCODER.encode(
                _Body(meta.device, meta.actor_type, meta.actor_id, summarize(envelope.event))
            )
            aad = _aad(
                envelope.subject_id,
                envelope.position,
                envelope.stream_id,
                envelope.version,
                kind,
                envelope.channel,
                envelope.recorded_at,
            )
            rows.append(
                (
                    envelope.position,
                    envelope.subject_id,
                    envelope.recorded_at,
                    kind,
                    envelope.channel,
                    stream,
                    envelope.stream_id,
                    envelope.version,
                    key.version,
                    seal(key, body, aad),
                )
            )
        if rows:
            columns = map(list, zip(*rows, strict=True))
            await conn.execute(_INSERT.format(table=placement[TIMELINE]), *columns)

    async def page(
        self,
        conn: Queryable,
        subject_id: UUID,
        where: TimelineFilter | None = None,
        *,
        limit: int = 20,
        order: Order = "newest",
        cursor: str | None = None,
    ) -> TimelinePage:
        """One page of the subject's timeline in log order (newest first unless `oldest`),
        after `cursor` (the previous page's `next_cursor`). SubjectErased once the subject
        is erased; BadCursor for a cursor it did not give."""
        where = where or TimelineFilter()
        args: list[object] = [subject_id]
        conditions = ["subject_id = $1"]
        if where.channels:
            args.append(sorted(where.channels))
            conditions.append(f"channel = ANY(${len(args)}::text[])")
        if where.kinds:
            args += [sorted(where.kinds - STREAMS), sorted(where.kinds & STREAMS)]
            conditions.append(
                f"(kind = ANY(${len(args) - 1}::text[]) OR stream = ANY(${len(args)}::text[]))"
            )
        if cursor is not None:
            args.append(_after(cursor))
            conditions.append(f"position {'<' if order == 'newest' else '>'} ${len(args)}")
        size = min(max(limit, 1), MAX_PAGE)
        args.append(size + 1)  # one more than asked: whether there is a next page
        rows = await conn.fetch(
            "SELECT position, occurred_at, kind, channel, stream, stream_id, version,"
            f" key_version, body FROM {TIMELINE} WHERE {' AND '.join(conditions)}"
            f" ORDER BY position {'DESC' if order == 'newest' else 'ASC'} LIMIT ${len(args)}",
            *args,
        )
        if not rows:
            if await self.vault.erased_among([subject_id], conn):
                raise SubjectErased(subject_id)
            return TimelinePage([], None)
        shown = rows[:size]
        keys = await self._keys(conn, subject_id, {row["key_version"] for row in shown})
        entries = [self._open(keys[row["key_version"]], subject_id, row) for row in shown]
        more = len(rows) > size
        return TimelinePage(entries, _cursor(entries[-1].position) if more else None)

    async def _keys(
        self, conn: Queryable, subject_id: UUID, versions: Iterable[int]
    ) -> dict[int, SubjectKey]:
        wanted = [(subject_id, version) for version in versions]
        found = await self.vault.keys_for_reading(wanted, conn)
        if len(found) < len(wanted):
            if await self.vault.erased_among([subject_id], conn):
                raise SubjectErased(subject_id)
            raise IntegrityViolation(f"the timeline of subject {subject_id}: no key")
        return {version: key for (_, version), key in found.items()}

    def _open(self, key: SubjectKey, subject_id: UUID, row: Any) -> TimelineEntry:
        aad = _aad(
            subject_id,
            row["position"],
            row["stream_id"],
            row["version"],
            row["kind"],
            row["channel"],
            row["occurred_at"],
        )
        try:
            body = _DECODER.decode(unseal(key, row["body"], aad))
        except (DecryptionFailed, msgspec.DecodeError):
            raise IntegrityViolation(f"the timeline of subject {subject_id}") from None
        return TimelineEntry(
            row["position"],
            row["occurred_at"],
            row["kind"],
            row["channel"],
            row["stream"],
            row["stream_id"],
            row["version"],
            body.device,
            body.actor_type,
            body.actor_id,
            body.summary,
        )


_INSERT = (
    "INSERT INTO {table} (position, subject_id, occurred_at, kind, channel, stream, stream_id,"
    " version, key_version, body)"
    " SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::timestamptz[], $4::text[], $5::text[],"
    " $6::text[], $7::uuid[], $8::int[], $9::int[], $10::bytea[])"
    " ON CONFLICT (position) DO NOTHING"
)
