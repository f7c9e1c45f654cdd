"""Snapshots of aggregates: a load reads the newest one and the events after it, so an action
on a stream of 10,000 events costs what it costs at 10.

An aggregate that can be snapshotted says how (`Snapshotting`): its state as a msgspec struct,
and how to stand it back up at a version. A snapshot is sealed with its subject's key, bound to
its stream, version and fingerprint, so erasure makes it unreadable with the events. The
fingerprint is a digest of the state struct's schema and of every event class's version: when
either changes, old snapshots are passed over (the load replays the stream) and replaced.
"""

from __future__ import annotations

import hashlib
from functools import cache
from typing import Any, Protocol, Self, TypeVar, runtime_checkable
from uuid import UUID

import msgspec
from eventsourcing.domain import Aggregate
from eventsourcing.utils import get_topic

from continuity.db import Queryable
from continuity.group_commit import SnapshotWrite
from privacy.cipher import SubjectKey, row_aad, seal, unseal

EVERY = 100
"""A snapshot is taken when a commit takes a stream past a multiple of this many events."""

TABLE = "snapshots"

_ENCODER = msgspec.msgpack.Encoder()


@runtime_checkable
class Snapshotting(Protocol):
    @classmethod
    def snapshot_type(cls) -> type[msgspec.Struct]:
        """The struct `snapshot_state` returns (its schema is part of the fingerprint)."""

    def snapshot_state(self) -> msgspec.Struct: ...

    @classmethod
    def restore(cls, stream_id: UUID, version: int, state: Any) -> Self:
        """The aggregate at `version`, from what `snapshot_state` returned then."""


A = TypeVar("A", bound=Aggregate)


@cache
def fingerprint(cls: type) -> str:
    """What a snapshot of `cls` depends on: its state's schema and its events' versions."""
    assert issubclass(cls, Snapshotting)
    events = sorted(
        f"{get_topic(event)}@{getattr(event, 'class_version', 1)}"
        for event in vars(cls).values()
        if isinstance(event, type) and issubclass(event, Aggregate.Event)
    )
    schema = msgspec.json.encode(msgspec.json.schema(cls.snapshot_type()), order="sorted")
    digest = hashlib.sha256(b"\n".join([get_topic(cls).encode(), schema, *map(str.encode, events)]))
    return digest.hexdigest()[:32]


def _aad(stream_id: UUID, version: int, print_: str, subject_id: UUID) -> bytes:
    return row_aad(TABLE, subject_id, f"{stream_id}/{version}/{print_}")


def take(key: SubjectKey, aggregate: Aggregate) -> SnapshotWrite:
    """The aggregate's snapshot at its current version, sealed with its subject's key."""
    cls = type(aggregate)
    assert isinstance(aggregate, Snapshotting)
    print_ = fingerprint(cls)
    body = _ENCODER.encode(aggregate.snapshot_state())
    return SnapshotWrite(
        stream_id=aggregate.id,
        subject_id=key.subject_id,
        version=aggregate.version,
        fingerprint=print_,
        key_version=key.version,
        state=seal(key, body, _aad(aggregate.id, aggregate.version, print_, key.subject_id)),
    )


@cache
def snapshotting(cls: type) -> bool:
    """Whether `cls` can be snapshotted (a protocol check is slow: asked once per class)."""
    return issubclass(cls, Snapshotting)


def due(cls: type, before: int, after: int) -> bool:
    """Whether a commit taking a stream of `cls` from `before` to `after` events takes one."""
    return before // EVERY < after // EVERY and snapshotting(cls)


def restore(cls: type[A], key: SubjectKey, row: Any) -> A | None:
    """The aggregate from a stored snapshot row; None if other code took it (fingerprint).
    A row whose tag does not verify raises DecryptionFailed."""
    print_ = fingerprint(cls)
    if row["fingerprint"] != print_:
        return None
    stream_id, version = row["stream_id"], row["version"]
    body = unseal(key, row["state"], _aad(stream_id, version, print_, key.subject_id))
    assert issubclass(cls, Snapshotting)
    state = msgspec.msgpack.decode(body, type=cls.snapshot_type())
    restored: A = cls.restore(stream_id, version, state)
    return restored


async def read(conn: Queryable, stream_ids: list[UUID]) -> list[Any]:
    return list(
        await conn.fetch(
            "SELECT stream_id, subject_id, version, fingerprint, key_version, state"
            f" FROM {TABLE} WHERE stream_id = ANY($1::uuid[])",
            stream_ids,
        )
    )


async def write(conn: Queryable, snapshot: SnapshotWrite) -> None:
    """Keep `snapshot` unless a newer one of the same code is there."""
    await conn.execute(
        f"INSERT INTO {TABLE} AS s (stream_id, subject_id, version, fingerprint, key_version,"
        " state) VALUES ($1, $2, $3, $4, $5, $6)"
        " ON CONFLICT (stream_id) DO UPDATE SET subject_id = excluded.subject_id,"
        " version = excluded.version, fingerprint = excluded.fingerprint,"
        " key_version = excluded.key_version, state = excluded.state, taken_at = now()"
        " WHERE s.version < excluded.version OR s.fingerprint <> excluded.fingerprint",
        snapshot.stream_id,
        snapshot.subject_id,
        snapshot.version,
        snapshot.fingerprint,
        snapshot.key_version,
        snapshot.state,
    )
