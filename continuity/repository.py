"""The unit of work: load eventsourcing aggregates from their streams, save their pending events.

Several aggregates, of one subject or several, are saved in one append: atomically, each stream
at the version it was loaded at. Handing a conversation to an agent, merging a guest into a
customer and applying an offline batch all change several aggregates at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar, cast
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, DomainEvent

from aggregates.metadata import EventMeta
from continuity import mapper as mapping
from continuity import snapshots
from continuity.db import Conn
from continuity.errors import IntegrityViolation, SubjectErased, ViewMoved
from continuity.group_commit import SnapshotWrite
from continuity.mapper import EventMapper, request_digest
from continuity.registry import Projected, Reads, Registry
from continuity.store import EventStore, NewEvent
from privacy.cipher import DecryptionFailed
from privacy.vault import GENERAL
from projections.envelope import Envelope

A = TypeVar("A", bound=Aggregate)

Verify = Callable[[Projected], None]
"""Checks what the inline projections made of an append before it commits; raising stops it."""


class Evidence(Protocol):
    """A record that must be written in the same transaction as the events it proves, and that
    is no projection (never rebuilt from the log, so it can outlive an erasure): the consent
    proofs. An append carrying one of its `topics` commits through the path that folds inside
    the append's transaction (rare events: the group commit keeps the rest)."""

    @property
    def topics(self) -> frozenset[str]: ...

    async def prepare(self) -> None:
        """Get ready before the transaction (fetch a key), so `write` needs no other
        connection."""

    async def write(self, conn: Conn, envelopes: list[Envelope]) -> None:
        """Write the records of `envelopes` (just appended, positions known) in `conn`'s
        transaction."""


@dataclass(frozen=True)
class Saved:
    """Where the events went, and what the inline projections folded them into (nothing for a
    retry that had already been recorded: it appended nothing)."""

    positions: list[int]
    projected: Projected = field(default_factory=dict)
    event_ids: list[UUID] = field(default_factory=list)
    """The id of the event at each of `positions`."""


_IDEMPOTENCY_NAMESPACE = UUID("0b3c9d6e-52f1-4c1e-8a8e-6d3f2b7a9c41")


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """A client's key for one request, scoped to the subject who sent it: another customer's
    use of the same key is another request."""

    subject_id: UUID
    key: UUID
    first: UUID = field(init=False, repr=False, compare=False)
    """The first event's id: what a retry is looked up by."""

    def __post_init__(self) -> None:
        first = uuid5(_IDEMPOTENCY_NAMESPACE, f"{self.subject_id}/{self.key}")
        object.__setattr__(self, "first", first)

    def event_ids(self, count: int) -> list[UUID]:
        """The event ids of the request's events: the same for every retry, and unrelated to
        the ids another subject's request with the same key gets."""
        return [self.first] + [uuid5(self.first, str(i)) for i in range(1, count)]


@dataclass(frozen=True)
class Claim:
    """The next `count` pending events of `aggregate` belong to one request of a batch: their
    ids and digests are those the request would have had alone (`key`, `request`)."""

    aggregate: Aggregate
    count: int
    key: IdempotencyKey
    request: bytes
    meta: EventMeta | None


@dataclass
class UnitOfWork:
    """Aggregates to save together, each with its subject and the metadata of its events, and
    the requests (`claim`) that a batch of them (an offline queue) made of their events."""

    changes: list[tuple[Aggregate, UUID, EventMeta]] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)

    def add(self, aggregate: Aggregate, subject_id: UUID, meta: EventMeta) -> UnitOfWork:
        if any(existing is aggregate for existing, _, _ in self.changes):
            raise ValueError(f"aggregate {aggregate.id} is already in this unit of work")
        self.changes.append((aggregate, subject_id, meta))
        return self

    def claim(
        self,
        aggregate: Aggregate,
        key: IdempotencyKey,
        request: bytes,
        meta: EventMeta | None = None,
    ) -> int:
        """Give the events `aggregate` gained since its last claim to the request `key` with
        fingerprint `request` (and `meta`, if given, instead of the aggregate's); how many.
        Claimed events are appended in the order claimed, before any unclaimed ones, so one
        append keeps a batch's order across aggregates and each request's exact retry."""
        if not any(existing is aggregate for existing, _, _ in self.changes):
            raise ValueError(f"aggregate {aggregate.id} is not in this unit of work")
        claimed = sum(c.count for c in self.claims if c.aggregate is aggregate)
        count = len(aggregate.pending_events) - claimed
        if count:
            self.claims.append(Claim(aggregate, count, key, request, meta))
        return count


PREPARE_ATTEMPTS = 3
"""Times an append whose view rows moved under it reads them again before it folds inside its
own transaction instead."""


class Repository:
    """Loads aggregates (from their newest snapshot and the events after it) and commits units
    of work, with the inline projections' rows (`inline`) written in the same commit."""

    def __init__(
        self,
        store: EventStore,
        mapper: EventMapper,
        inline: Registry | None = None,
        evidence: Sequence[Evidence] = (),
    ) -> None:
        self.store = store
        self.mapper = mapper
        self.inline = inline
        self.evidence = tuple(evidence)

    async def load(self, stream_id: UUID, cls: type[A]) -> A | None:
        """The aggregate as of its last event, None if the stream is empty; SubjectErased if
        its subject's keys were destroyed."""
        return (await self.load_many([stream_id], cls)).get(stream_id)

    async def load_many(self, stream_ids: Iterable[UUID], cls: type[A]) -> dict[UUID, A]:
        """The aggregates among `stream_ids` that exist: each from its snapshot, if it has one
        this code can use, and the events after it. A load that replayed a whole stream of at
        least `snapshots.EVERY` events leaves a snapshot behind."""
        ids = list(dict.fromkeys(stream_ids))
        aggregates = await self._snapshots(ids, cls)
        based = {stream: aggregate.version for stream, aggregate in aggregates.items()}
        records = await self.store.select_streams(ids, based)
        envelopes = await self.mapper.to_envelopes(records)
        for envelope in envelopes:
            if envelope.erased:
                raise SubjectErased(envelope.subject_id)
            current = aggregates.get(envelope.stream_id)
            follows = current.version if current is not None else 0
            if envelope.version != follows + 1:
                raise IntegrityViolation(
                    f"stream {envelope.stream_id}: version {envelope.version} does not follow"
                    f" version {follows}"
                )
            if envelope.event is None:  # expired by retention
                _pass_expired(current, envelope)
                continue
            mutated = cast(Aggregate.Event, envelope.event).mutate(current)
            if not isinstance(mutated, cls):
                raise TypeError(f"stream {envelope.stream_id} is not a {cls.__name__}")
            aggregates[envelope.stream_id] = mutated
        await self._leave_snapshots(cls, aggregates, based, envelopes)
        return aggregates

    async def _snapshots(self, stream_ids: list[UUID], cls: type[A]) -> dict[UUID, A]:
        if not stream_ids or not snapshots.snapshotting(cls):
            return {}
        rows = await snapshots.read(self.store.pool, stream_ids)
        keys = await self.mapper.vault.keys_for_reading(
            (row["subject_id"], row["key_version"]) for row in rows
        )
        found: dict[UUID, A] = {}
        for row in rows:
            key = keys.get((row["subject_id"], row["key_version"]))
            if key is None:  # erased, or re-keyed since: the events tell which
                continue
            try:
                aggregate = snapshots.restore(cls, key, row)
            except DecryptionFailed:
                raise IntegrityViolation(f"the snapshot of stream {row['stream_id']}") from None
            if aggregate is not None:
                found[row["stream_id"]] = aggregate
        return found

    async def _leave_snapshots(
        self,
        cls: type[A],
        aggregates: Mapping[UUID, A],
        based: Mapping[UUID, int],
        envelopes: list[Envelope],
    ) -> None:
        if not envelopes or not snapshots.snapshotting(cls):
            return
        subjects = {envelope.stream_id: envelope.subject_id for envelope in envelopes}
        for stream, aggregate in aggregates.items():
            if aggregate.version - based.get(stream, 0) >= snapshots.EVERY:
                key = await self.mapper.vault.key_for_writing(subjects[stream])
                await snapshots.write(self.store.pool, snapshots.take(key, aggregate))

    async def save(
        self,
        aggregate: Aggregate,
        subject_id: UUID,
        meta: EventMeta,
        idempotency_key: IdempotencyKey,
        request: bytes,
        verify: Verify | None = None,
        *,
        reads: Reads | None = None,
    ) -> Saved:
        """`commit` of one aggregate."""
        work = UnitOfWork().add(aggregate, subject_id, meta)
        return await self.commit(work, idempotency_key, request, verify, reads=reads)

    async def commit(
        self,
        work: UnitOfWork,
        idempotency_key: IdempotencyKey | None,
        request: bytes,
        verify: Verify | None = None,
        *,
        reads: Reads | None = None,
    ) -> Saved:
        """Append every pending event of `work` in one atomic append, each stream expected
        where its aggregate was loaded. `request` fingerprints the command: each row's digest
        is `request_digest(its subject's key, request, index)`, so a retry matches even if the
        state moved on. Events a request of a batch claimed (`UnitOfWork.claim`) take their
        ids and digests from that request instead, and `idempotency_key` may then be None.

        The inline projections' rows are computed before the append from `reads` (what
        `Registry.read_inline` read when the command's state was loaded; read here if not
        given) and written by the append's group commit, with any snapshot due; `verify` may
        refuse what they made, and then nothing is appended. Rows that moved since `reads`
        were read raise ViewMoved (read here: they are read again). A projection that must
        read the log to fold folds inside the append's own transaction instead."""
        expected: dict[UUID, int] = {}
        collected: dict[UUID, list[DomainEvent]] = {}
        for aggregate, _, _ in work.changes:
            events = cast(list[DomainEvent], aggregate.collect_events())
            if events:
                expected[aggregate.id] = events[0].originator_version - 1
                collected[aggregate.id] = events
        labelled = _labelled(work, collected, idempotency_key, request)
        if not labelled:
            return Saved([])
        pending = [(event, subject_id, meta) for event, subject_id, meta, *_ in labelled]
        vault = self.mapper.vault
        keys = {  # the digests and snapshots take the general key; each event its class's
            subject_id: await vault.key_for_writing(subject_id)
            for subject_id in dict.fromkeys(subject for _, subject, _ in pending)
        }
        classed = {
            (subject_id, cls): await vault.key_for_writing(subject_id, cls)
            for subject_id, cls in dict.fromkeys(
                (subject, mapping.key_class(event)) for event, subject, _ in pending
            )
            if cls != GENERAL
        }
        rows = [
            EventMapper.seal_event(
                classed.get((subject_id, mapping.key_class(event)), keys[subject_id]),
                meta,
                event,
                event_id,
                request_digest(keys[subject_id], fingerprint, index),
            )
            for event, subject_id, meta, event_id, fingerprint, index in labelled
        ]
        ids = [row.event_id for row in rows]
        due = [
            snapshots.take(keys[subject_id], aggregate)
            for aggregate, subject_id, _ in work.changes
            if aggregate.id in expected
            and snapshots.due(type(aggregate), expected[aggregate.id], aggregate.version)
        ]
        inline = self.inline
        proving = [e for e in self.evidence if any(row.topic in e.topics for row in rows)]
        if proving:
            return await self._commit_folding(inline, rows, pending, expected, due, verify, proving)
        if inline is None:
            positions, _ = await self.store.append_detailed(rows, expected, snapshots=due)
            return Saved(positions, event_ids=ids)
        envelopes = _envelopes(rows, pending, [0] * len(rows))
        subjects = list(keys)
        given = reads is not None
        for _ in range(PREPARE_ATTEMPTS):
            if reads is None:
                reads = await inline.read_inline(self.store.pool, subjects)
            prepared = None if reads is None else await inline.prepare_inline(reads, envelopes)
            if prepared is None:
                break
            writes, projected = prepared
            if verify is not None:
                verify(projected)
            try:
                positions, replayed = await self.store.append_detailed(
                    rows, expected, views=writes, snapshots=due
                )
            except ViewMoved:
                if given:
                    raise
                reads = None
                continue
            return Saved(positions, {} if replayed else projected, ids)
        return await self._commit_folding(inline, rows, pending, expected, due, verify)

    async def _commit_folding(
        self,
        inline: Registry | None,
        rows: list[NewEvent],
        pending: list[tuple[DomainEvent, UUID, EventMeta]],
        expected: dict[UUID, int],
        due: list[SnapshotWrite],
        verify: Verify | None,
        proving: Sequence[Evidence] = (),
    ) -> Saved:
        """The append with the inline projections folding, and `proving` writing, inside its
        own transaction."""
        projected: Projected = {}
        for evidence in proving:
            await evidence.prepare()

        async def in_transaction(conn: Conn, positions: list[int]) -> None:
            envelopes = _envelopes(rows, pending, positions)
            if inline is not None:
                projected.update(await inline.apply_inline(conn, envelopes))
            if verify is not None:
                verify(projected)
            for evidence in proving:
                await evidence.write(conn, envelopes)
            for snapshot in due:
                await snapshots.write(conn, snapshot)

        positions, replayed = await self.store.append_detailed(
            rows, expected, project=in_transaction
        )
        return Saved(positions, {} if replayed else projected, [row.event_id for row in rows])


def _pass_expired(aggregate: Aggregate | None, envelope: Envelope) -> None:
    """Step `aggregate` over an event whose period's key retention destroyed: only an
    aggregate that says how (`pass_expired`) can, and only after its first event."""
    step = getattr(aggregate, "pass_expired", None)
    if step is None:
        raise IntegrityViolation(
            f"stream {envelope.stream_id}: version {envelope.version} expired, and"
            f" {type(aggregate).__name__} cannot be loaded without it"
        )
    step(envelope.version, envelope.recorded_at)


_Labelled = tuple[DomainEvent, UUID, EventMeta, UUID, bytes, int]
"""An event to append, its subject and metadata, its id, and its request's fingerprint and
index among that request's events (what its digest is made from)."""


def _labelled(
    work: UnitOfWork,
    collected: Mapping[UUID, list[DomainEvent]],
    idempotency_key: IdempotencyKey | None,
    request: bytes,
) -> list[_Labelled]:
    """Each pending event of `work` with its id and digest input: the claimed ones in the order
    claimed, each from its request's key; then the rest from `idempotency_key`."""
    subjects = {aggregate.id: (subject_id, meta) for aggregate, subject_id, meta in work.changes}
    taken = dict.fromkeys(collected, 0)
    labelled: list[_Labelled] = []
    for claim in work.claims:
        stream = claim.aggregate.id
        start = taken[stream]
        events = collected[stream][start : start + claim.count]
        taken[stream] = start + claim.count
        subject_id, meta = subjects[stream]
        for index, (event, event_id) in enumerate(
            zip(events, claim.key.event_ids(claim.count), strict=True)
        ):
            labelled.append((event, subject_id, claim.meta or meta, event_id, claim.request, index))
    rest = [
        (event, *subjects[stream])
        for stream, events in collected.items()
        for event in events[taken[stream] :]
    ]
    if rest and idempotency_key is None:
        raise ValueError("events no request claimed need the unit of work's idempotency key")
    if rest and idempotency_key is not None:
        ids = idempotency_key.event_ids(len(rest))
        labelled += [
            (event, subject_id, meta, event_id, request, index)
            for index, ((event, subject_id, meta), event_id) in enumerate(
                zip(rest, ids, strict=True)
            )
        ]
    return labelled


def _envelopes(
    rows: Sequence[NewEvent],
    pending: Sequence[tuple[DomainEvent, UUID, EventMeta]],
    positions: Sequence[int],
) -> list[Envelope]:
    """What a fold receives for events just appended, without reading them back."""
    return [
        mapping.envelope(row, position, event, meta)
        for position, row, (event, _, meta) in zip(positions, rows, pending, strict=True)
    ]
