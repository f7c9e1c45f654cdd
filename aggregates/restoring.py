"""Standing an aggregate up at a version from its state (a snapshot's, or what a view carries),
as if its events had been replayed: what every `restore` of a snapshot-able aggregate does."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.domain import Aggregate

A = TypeVar("A", bound=Aggregate)


def restored(
    cls: type[A],
    stream_id: UUID,
    version: int,
    *,
    created_on: datetime | None = None,
    modified_on: datetime | None = None,
    **state: Any,
) -> A:
    """An aggregate of `cls` at `version` with `state` as its attributes, no pending events."""
    aggregate = object.__new__(cls)
    aggregate.__dict__.update(
        _id=stream_id,
        _version=version,
        _created_on=created_on,
        _modified_on=modified_on,
        _pending_events=[],
        **state,
    )
    return aggregate
