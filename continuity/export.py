"""Everything held about a data subject, decrypted, as one JSON document (GDPR Art. 15 and 20).

The document (`SubjectExport`) has a part per subject: the subject, then each guest linked to
them at sign-in (`guests.linked_to`), whose data merged into theirs. A part holds the subject's
registered identifiers (their kinds only: the values are kept as keyed hashes, never in a form
that could be given back), devices (revoked ones too, names opened), consents, current views
(the session view, the work-queue rows), the access audit of who read their data and why, the
timeline, and every event of every stream with its payload opened.

A long history is never held in memory: `chunks` writes the document a page at a time (events,
timeline and audit entries are read in pages and encoded as they go). The streamed lists stop
where the subject's log, timeline and audit stood when `prepare` looked, so the document is the
one its `fingerprint` describes. An erasure that lands while an export streams cuts it short
(the answer then ends before the JSON does, and does not parse): nothing is exported past it.

An erased subject has no export (SubjectErased, 410 as every read); the access audit, which
outlives erasure, still answers `GET /v1/privacy/audit?subject_id=`. A linked guest erased on
their own is a part that says when (`erased_at`), with their events as placeholders.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from uuid import UUID

import msgspec

from aggregates.consent import DEFAULTS, PURPOSES
from aggregates.errors import NotFound
from continuity import application_queue, conversation_queue
from continuity.audit import AuditFilter
from continuity.consent_proofs import Proof
from continuity.consents import ledger_of
from continuity.errors import SubjectErased
from continuity.identifiers import RegisteredIdentifier
from continuity.mapper import fields_of
from continuity.timeline import TIMELINE, TimelineEntry
from projections.consent import ConsentEntry
from projections.envelope import Envelope
from projections.session import SessionView

if TYPE_CHECKING:
    from continuity.runtime import Runtime

S = TypeVar("S", bound=msgspec.Struct)
FORMAT: Literal["continuity.subject-export"] = "continuity.subject-export"
VERSION = 1
EVENT_PAGE = 500
"""Events read, opened and written per page: what an export holds in memory at once."""
AUDIT_PAGE = 100


class ExportedEvent(msgspec.Struct, frozen=True, gc=False):
    """One event of the log as recorded, its payload opened. A placeholder (`readable` false:
    its key was destroyed by an erasure or by retention) keeps only what the row holds in
    clear: topic, channel, time and place in the log."""

    position: int
    """Its place in the global log."""
    event_id: UUID
    stream_id: UUID
    version: int
    """The stream's version after it."""
    topic: str
    """The event's type (`aggregates.cart:Cart.ItemAdded`)."""
    channel: str
    recorded_at: datetime
    key_version: int
    readable: bool
    device: str | None
    """The device it came from, as recorded (a registered device's id, or a token's name)."""
    actor_type: str | None
    """customer, agent, bot or system."""
    actor_id: str | None
    occurred_at: datetime | None
    """When a device that queued the action offline says it happened."""
    payload: dict[str, Any] | None
    """What happened, by field, as the event class defines it today (older events upcast)."""

    @classmethod
    def of(cls, envelope: Envelope, event_id: UUID) -> ExportedEvent:
        meta = envelope.meta
        event = envelope.event
        return cls(
            position=envelope.position,
            event_id=event_id,
            stream_id=envelope.stream_id,
            version=envelope.version,
            topic=envelope.topic,
            channel=envelope.channel,
            recorded_at=envelope.recorded_at,
            key_version=envelope.key_version,
            readable=event is not None,
            device=meta.device if meta is not None else None,
            actor_type=meta.actor_type if meta is not None else None,
            actor_id=meta.actor_id if meta is not None else None,
            occurred_at=meta.occurred_at if meta is not None else None,
            payload=fields_of(event) if event is not None else None,
        )


class ExportedDevice(msgspec.Struct, frozen=True, gc=False):
    device_id: UUID
    name: str
    channel: str
    first_seen: datetime
    last_seen: datetime
    revoked_at: datetime | None


class Consent(msgspec.Struct, frozen=True, gc=False):
    """A purpose and whether the subject allows it now: their last recorded choice (with its
    policy version, channel, source and time), or the default when they never chose."""

    purpose: str
    given: bool
    recorded: bool
    """False: nothing recorded, the purpose's default holds."""
    policy_version: str | None = None
    channel: str | None = None
    source: str | None = None
    at: datetime | None = None


class GuestRecord(msgspec.Struct, frozen=True, gc=False):
    """The subject began as a guest (no account): when, and the customer they signed in as."""

    created_at: datetime
    linked_to: UUID | None
    linked_at: datetime | None
    merged_at: datetime | None


class AccessRecord(msgspec.Struct, frozen=True, gc=False):
    """A read of the subject's data by someone else: who (an agent's id, or a compliance
    officer's for an export), what (the route), when, and the purpose they gave."""

    read_at: datetime
    agent_id: UUID
    what: str
    resource_id: UUID | None
    purpose: str


class ApplicationQueueRow(application_queue.QueueRow, frozen=True, gc=False):
    """An application's row in the agents' work queue."""


class ConversationQueueRow(conversation_queue.QueueRow, frozen=True, gc=False):
    """A conversation's row in the agents' conversation queue."""


class WorkQueues(msgspec.Struct, frozen=True, gc=False):
    applications: list[ApplicationQueueRow]
    conversations: list[ConversationQueueRow]


Relation = Literal["subject", "linked_guest"]


class SubjectData(msgspec.Struct, frozen=True, gc=False):
    """Everything held about one subject."""

    subject_id: UUID
    relation: Relation
    """`subject`: whom the export is of; `linked_guest`: a guest they signed in from."""
    erased_at: datetime | None
    """Set for a linked guest erased on their own: their events are placeholders."""
    guest: GuestRecord | None
    identifiers: list[RegisteredIdentifier]
    """The kinds of identifier (email, phone) registered to the subject, and since when. Only a
    keyed hash of each value is stored, so the value itself cannot be exported."""
    devices: list[ExportedDevice]
    consents: list[Consent]
    """Every purpose, as it stands now."""
    consent_history: list[Proof]
    """Every choice recorded, oldest first (the proofs, which outlive an erasure)."""
    session: SessionView | None
    """The resume view as stored: cart, applications with their answers, conversations with
    their last turns, activity, each device's resume point (null: none yet)."""
    work_queues: WorkQueues
    access_audit: list[AccessRecord]
    """Oldest first."""
    timeline: list[TimelineEntry]
    """Oldest first."""
    events: list[ExportedEvent]
    """Every event of every stream of the subject, in log order."""


_STREAMED = ("access_audit", "timeline", "events")
"""The last fields of `SubjectData`: written a page at a time."""


class SubjectExport(msgspec.Struct, frozen=True, gc=False):
    """Everything held about a data subject: the subject's part first, then one per guest
    linked to them."""

    format: Literal["continuity.subject-export"]
    version: int
    """The format's version; a change that could break a reader makes a new one."""
    exported_at: datetime
    subject_id: UUID
    subjects: list[SubjectData]


@dataclass(frozen=True)
class _Part:
    head: SubjectData
    """The part with its streamed lists empty."""
    events: tuple[int, int]
    timeline: tuple[int, int]
    audit: tuple[int, int]
    """Each streamed list's length and highest position (or audit entry id) when prepared."""


@dataclass(frozen=True)
class Prepared:
    """An export ready to stream: the small parts read, the long ones measured."""

    subject_id: UUID
    exported_at: datetime
    parts: list[_Part]

    def fingerprint(self) -> str:
        """A digest of what the document holds but its time: equal whenever the exported data
        is (the log, timeline and audit only grow, so a length and a last position say which
        entries they hold)."""
        digest = hashlib.blake2b(digest_size=12)
        for part in self.parts:
            digest.update(_ENCODER.encode(part.head))
            digest.update(_ENCODER.encode([part.events, part.timeline, part.audit]))
        return digest.hexdigest()


_ENCODER = msgspec.json.Encoder()


def _without(document: msgspec.Struct, tail: bytes) -> bytes:
    """`document` in JSON without `tail`, the end that its last fields, empty, give."""
    encoded = _ENCODER.encode(document)
    assert encoded.endswith(tail), tail
    return encoded[: -len(tail)]


_PART_TAIL = b"".join(b'"' + name.encode() + b'":[],' for name in _STREAMED)[:-1] + b"}"
"""How a part with its streamed lists empty ends: `"access_audit":[],...,"events":[]}`."""


class SubjectExports:
    """Exports read through one process's runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def held(self, subject_id: UUID) -> None:
        """SubjectErased if the subject is erased; NotFound if nothing at all is held about
        them (no event, device, identifier, guest record or audit entry)."""
        runtime = self.runtime
        if await runtime.vault.erased_among([subject_id]):
            raise SubjectErased(subject_id)
        found = await runtime.pool.fetchval(
            "SELECT EXISTS (SELECT FROM events WHERE subject_id = $1)"
            " OR EXISTS (SELECT FROM devices WHERE subject_id = $1)"
            " OR EXISTS (SELECT FROM identifiers WHERE subject_id = $1)"
            " OR EXISTS (SELECT FROM guests WHERE subject_id = $1 OR linked_to = $1)"
            " OR EXISTS (SELECT FROM access_audit WHERE subject_id = $1)",
            subject_id,
        )
        if not found:
            raise NotFound("nothing is held about this subject", field="subject_id")

    async def prepare(self, subject_id: UUID) -> Prepared:
        """Read the subject's small parts and measure the long ones; SubjectErased if the
        subject is erased."""
        runtime = self.runtime
        if await runtime.vault.erased_among([subject_id]):
            raise SubjectErased(subject_id)
        parts = [await self._part(subject_id, "subject")]
        for guest in await runtime.guests.linked_to(subject_id):
            parts.append(await self._part(guest, "linked_guest"))
        return Prepared(subject_id, datetime.now(UTC), parts)

    async def chunks(self, prepared: Prepared) -> AsyncIterator[bytes]:
        """The document (`SubjectExport`) in JSON, a piece at a time."""
        top = SubjectExport(FORMAT, VERSION, prepared.exported_at, prepared.subject_id, [])
        yield _without(top, b"]}")
        for index, part in enumerate(prepared.parts):
            if index:
                yield b","
            async for chunk in self._part_chunks(part):
                yield chunk
        yield b"]}"

    async def _part_chunks(self, part: _Part) -> AsyncIterator[bytes]:
        yield _without(part.head, _PART_TAIL)
        subject = part.head.subject_id
        yield b'"access_audit":['
        async for chunk in _joined(self._audit(subject, part.audit[1])):
            yield chunk
        yield b'],"timeline":['
        if part.head.erased_at is None and part.timeline[0]:
            async for chunk in _joined(self._timeline(subject, part.timeline[1])):
                yield chunk
        yield b'],"events":['
        async for chunk in _joined(self._events(subject, part.events[1])):
            yield chunk
        yield b"]}"

    async def _audit(self, subject_id: UUID, upto: int) -> AsyncIterator[list[bytes]]:
        where = AuditFilter(subject_id=subject_id, upto=upto)
        cursor = None
        while True:
            page = await self.runtime.audit.page(
                where, limit=AUDIT_PAGE, order="oldest", cursor=cursor
            )
            yield [
                _ENCODER.encode(
                    AccessRecord(e.read_at, e.agent_id, e.what, e.resource_id, e.purpose)
                )
                for e in page.entries
            ]
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def _timeline(self, subject_id: UUID, upto: int) -> AsyncIterator[list[bytes]]:
        runtime = self.runtime
        cursor = None
        while True:
            page = await runtime.timeline.page(
                runtime.pool, subject_id, order="oldest", limit=100, cursor=cursor
            )
            yield [_ENCODER.encode(e) for e in page.entries if e.position <= upto]
            if page.next_cursor is None or page.entries[-1].position >= upto:
                return
            cursor = page.next_cursor

    async def _events(self, subject_id: UUID, upto: int) -> AsyncIterator[list[bytes]]:
        runtime = self.runtime
        after = 0
        while after < upto:
            records = await runtime.store.select_subject_page(
                subject_id, after=after, upto=upto, limit=EVENT_PAGE
            )
            if not records:
                return
            envelopes = await runtime.mapper.to_envelopes(records)
            yield [
                _ENCODER.encode(ExportedEvent.of(envelope, record.event_id))
                for envelope, record in zip(envelopes, records, strict=True)
            ]
            after = records[-1].position

    async def _part(self, subject_id: UUID, relation: Relation) -> _Part:
        runtime = self.runtime
        pool = runtime.pool
        erased_at: datetime | None = await pool.fetchval(
            "SELECT erased_at FROM erased_subjects WHERE subject_id = $1", subject_id
        )
        guest = await pool.fetchrow(
            "SELECT created_at, linked_to, linked_at, merged_at FROM guests WHERE subject_id = $1",
            subject_id,
        )
        session = None
        devices: list[ExportedDevice] = []
        if erased_at is None:
            session = await runtime.sessions.load(pool, subject_id)
            devices = [
                ExportedDevice(
                    d.device_id, d.name, d.channel, d.first_seen, d.last_seen, d.revoked_at
                )
                for d in await runtime.devices.of_subject(subject_id, revoked=True)
            ]
        consents = ledger_of(subject_id, session or SessionView(), {}).consents
        head = SubjectData(
            subject_id=subject_id,
            relation=relation,
            erased_at=erased_at,
            guest=GuestRecord(**dict(guest)) if guest is not None else None,
            identifiers=await runtime.identifiers.of_subject(subject_id),
            devices=devices,
            consents=[_consent(purpose, consents.get(purpose)) for purpose in PURPOSES],
            consent_history=await runtime.consents.history(subject_id),
            session=session,
            work_queues=WorkQueues(
                await _rows(pool, application_queue.QUEUE, ApplicationQueueRow, subject_id),
                await _rows(pool, conversation_queue.QUEUE, ConversationQueueRow, subject_id),
            ),
            access_audit=[],
            timeline=[],
            events=[],
        )
        timeline = await pool.fetchrow(
            f"SELECT count(*), coalesce(max(position), 0) FROM {TIMELINE} WHERE subject_id = $1",
            subject_id,
        )
        assert timeline is not None
        return _Part(
            head,
            await runtime.store.subject_extent(subject_id),
            (timeline[0], timeline[1]),
            await runtime.audit.last_of(subject_id),
        )


async def _rows(pool: Any, table: str, struct: type[S], subject_id: UUID) -> list[S]:
    """The subject's rows of a work queue, oldest first."""
    rows = await pool.fetch(
        f"SELECT {', '.join(struct.__struct_fields__)} FROM {table}"
        " WHERE subject_id = $1 ORDER BY started_at",
        subject_id,
    )
    return [struct(**dict(row)) for row in rows]


async def _joined(pages: AsyncIterator[list[bytes]]) -> AsyncIterator[bytes]:
    """Each page's items, comma-separated across pages: one chunk per page."""
    first = True
    async for items in pages:
        if not items:
            continue
        chunk = b",".join(items)
        yield chunk if first else b"," + chunk
        first = False


def _consent(purpose: str, entry: ConsentEntry | None) -> Consent:
    if entry is None:
        return Consent(purpose, DEFAULTS[purpose], recorded=False)
    return Consent(
        purpose, entry.given, True, entry.policy_version, entry.channel, entry.source, entry.at
    )
