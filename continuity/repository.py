"""The unit of work: load an eventsourcing aggregate from its stream, save its pending events."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar, cast
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, DomainEvent

from aggregates.metadata import EventMeta
from continuity.db import Conn
from continuity.errors import SubjectErased
from continuity.mapper import EventMapper
from continuity.store import EventStore
from projections.envelope import Envelope

A = TypeVar("A", bound=Aggregate)

ProjectEnvelopes = Callable[[Conn, list[Envelope]], Awaitable[None]]


def event_ids_for(idempotency_key: UUID, count: int) -> list[UUID]:
    """The first event of a command carries the client's key itself; any further events get
    ids derived from it, so a retried command maps to exactly the same event_ids."""
    return [idempotency_key] + [uuid5(idempotency_key, str(i)) for i in range(1, count)]


class Repository:
    def __init__(self, store: EventStore, mapper: EventMapper) -> None:
        self.store = store
        self.mapper = mapper

    async def load(self, stream_id: UUID, cls: type[A]) -> A | None:
        """The aggregate as of its last event, None if the stream is empty; SubjectErased if
        its subject's keys were destroyed."""
        records = await self.store.select_events(stream_id)
        if not records:
            return None
        envelopes = await self.mapper.to_envelopes(records)
        aggregate: A | None = None
        for envelope in envelopes:
            if envelope.event is None:
                raise SubjectErased(envelope.subject_id)
            aggregate = cast(Aggregate.Event, envelope.event).mutate(aggregate)
        if not isinstance(aggregate, cls):
            raise TypeError(f"stream {stream_id} is not a {cls.__name__}")
        return aggregate

    async def save(
        self,
        aggregate: Aggregate,
        subject_id: UUID,
        meta: EventMeta,
        idempotency_key: UUID,
        request: bytes,
        project: ProjectEnvelopes | None = None,
    ) -> list[int]:
        """Append the aggregate's pending events, expecting its stream where it was loaded.
        `request` fingerprints the command (see `EventMapper.to_rows`); `project` folds the
        events into read models inside the same transaction."""
        pending = cast(list[DomainEvent], aggregate.collect_events())
        if not pending:
            return []
        ids = event_ids_for(idempotency_key, len(pending))
        rows = await self.mapper.to_rows(subject_id, meta, pending, ids, request)
        expected = {aggregate.id: pending[0].originator_version - 1}
        if project is None:
            return await self.store.append(rows, expected)

        async def in_transaction(conn: Conn, positions: list[int]) -> None:
            now = datetime.now(UTC)
            envelopes = [
                Envelope(
                    position=position,
                    stream_id=row.stream_id,
                    version=row.version,
                    subject_id=subject_id,
                    topic=row.topic,
                    channel=row.channel,
                    recorded_at=now,
                    event=event,
                    meta=meta,
                )
                for position, row, event in zip(positions, rows, pending, strict=True)
            ]
            await project(conn, envelopes)

        return await self.store.append(rows, expected, project=in_transaction)
