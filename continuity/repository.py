"""The unit of work: load eventsourcing aggregates from their streams, save their pending events.

Several aggregates, of one subject or several, are saved in one append: atomically, each stream
at the version it was loaded at. Handing a conversation to an agent, merging a guest into a
customer and applying an offline batch all change several aggregates at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar, cast
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, DomainEvent

from aggregates.metadata import EventMeta
from continuity import mapper as mapping
from continuity.db import Conn
from continuity.errors import IntegrityViolation, SubjectErased
from continuity.mapper import EventMapper, request_digest
from continuity.registry import Projected
from continuity.store import EventStore, NewEvent
from projections.envelope import Envelope

A = TypeVar("A", bound=Aggregate)

ProjectInline = Callable[[Conn, list[Envelope]], Awaitable[Projected]]
"""Folds saved events into the inline projections inside the append's transaction
(`Registry.apply_inline`)."""

Verify = Callable[[Projected], None]
"""Checks, inside the append's transaction, what the inline projections made of it; raising
rolls the append back."""


@dataclass(frozen=True)
class Saved:
    """Where the events went, and what the inline projections folded them into (nothing for a
    retry that had already been recorded: it appended nothing)."""

    positions: list[int]
    projected: Projected = field(default_factory=dict)


_IDEMPOTENCY_NAMESPACE = UUID("0b3c9d6e-52f1-4c1e-8a8e-6d3f2b7a9c41")


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """A client's key for one request, scoped to the subject who sent it: another customer's
    use of the same key is another request."""

    subject_id: UUID
    key: UUID

    def event_ids(self, count: int) -> list[UUID]:
        """The event ids of the request's events: the same for every retry, and unrelated to
        the ids another subject's request with the same key gets."""
        first = uuid5(_IDEMPOTENCY_NAMESPACE, f"{self.subject_id}/{self.key}")
        return [first] + [uuid5(first, str(i)) for i in range(1, count)]


@dataclass
class UnitOfWork:
    """Aggregates to save together, each with its subject and the metadata of its events."""

    changes: list[tuple[Aggregate, UUID, EventMeta]] = field(default_factory=list)

    def add(self, aggregate: Aggregate, subject_id: UUID, meta: EventMeta) -> UnitOfWork:
        if any(existing is aggregate for existing, _, _ in self.changes):
            raise ValueError(f"aggregate {aggregate.id} is already in this unit of work")
        self.changes.append((aggregate, subject_id, meta))
        return self


class Repository:
    def __init__(
        self, store: EventStore, mapper: EventMapper, project: ProjectInline | None = None
    ) -> None:
        self.store = store
        self.mapper = mapper
        self.project = project

    async def load(self, stream_id: UUID, cls: type[A]) -> A | None:
        """The aggregate as of its last event, None if the stream is empty; SubjectErased if
        its subject's keys were destroyed."""
        return (await self.load_many([stream_id], cls)).get(stream_id)

    async def load_many(self, stream_ids: Iterable[UUID], cls: type[A]) -> dict[UUID, A]:
        """The aggregates among `stream_ids` that exist, from one read of the log."""
        records = await self.store.select_streams(list(dict.fromkeys(stream_ids)))
        envelopes = await self.mapper.to_envelopes(records)
        aggregates: dict[UUID, A] = {}
        for envelope in envelopes:
            if envelope.event is None:
                raise SubjectErased(envelope.subject_id)
            current = aggregates.get(envelope.stream_id)
            follows = current.version if current is not None else 0
            if envelope.version != follows + 1:
                raise IntegrityViolation(
                    f"stream {envelope.stream_id}: version {envelope.version} does not follow"
                    f" version {follows}"
                )
            mutated = cast(Aggregate.Event, envelope.event).mutate(current)
            if not isinstance(mutated, cls):
                raise TypeError(f"stream {envelope.stream_id} is not a {cls.__name__}")
            aggregates[envelope.stream_id] = mutated
        return aggregates

    async def save(
        self,
        aggregate: Aggregate,
        subject_id: UUID,
        meta: EventMeta,
        idempotency_key: IdempotencyKey,
        request: bytes,
        verify: Verify | None = None,
    ) -> Saved:
        """`commit` of one aggregate."""
        work = UnitOfWork().add(aggregate, subject_id, meta)
        return await self.commit(work, idempotency_key, request, verify)

    async def commit(
        self,
        work: UnitOfWork,
        idempotency_key: IdempotencyKey,
        request: bytes,
        verify: Verify | None = None,
    ) -> Saved:
        """Append every pending event of `work` in one atomic append, each stream expected
        where its aggregate was loaded. `request` fingerprints the command: each row's digest
        is `request_digest(its subject's key, request, index)`, so a retry matches even if the
        state moved on. The inline projections fold the events in the same transaction, and
        `verify` may refuse what they made, rolling the append back."""
        pending: list[tuple[DomainEvent, UUID, EventMeta]] = []
        expected: dict[UUID, int] = {}
        for aggregate, subject_id, meta in work.changes:
            events = cast(list[DomainEvent], aggregate.collect_events())
            if events:
                expected[aggregate.id] = events[0].originator_version - 1
                pending += [(event, subject_id, meta) for event in events]
        if not pending:
            return Saved([])
        keys = {
            subject_id: await self.mapper.vault.key_for_writing(subject_id)
            for subject_id in dict.fromkeys(subject for _, subject, _ in pending)
        }
        ids = idempotency_key.event_ids(len(pending))
        rows = [
            EventMapper.seal_event(
                keys[subject_id],
                meta,
                event,
                event_id,
                request_digest(keys[subject_id], request, index),
            )
            for index, ((event, subject_id, meta), event_id) in enumerate(
                zip(pending, ids, strict=True)
            )
        ]
        project = self.project
        if project is None:
            return Saved(await self.store.append(rows, expected))
        projected: Projected = {}

        async def in_transaction(conn: Conn, positions: list[int]) -> None:
            projected.update(await project(conn, _envelopes(rows, pending, positions)))
            if verify is not None:
                verify(projected)

        return Saved(await self.store.append(rows, expected, project=in_transaction), projected)


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
