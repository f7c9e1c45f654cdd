"""The input of every fold: a decrypted event with its place in the log, or a placeholder."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec
from eventsourcing.domain import DomainEvent

from aggregates.metadata import EventMeta


class Envelope(msgspec.Struct, frozen=True, gc=False):
    """`event` and `meta` are None when the subject has been erased, or when retention
    destroyed the key of the period the event was written in (`expired`): only the
    non-personal facts (topic, channel, time, position) survive, and projections skip such
    events (an expired one still counts as its stream's version, since what follows it in the
    stream is readable).
    A rebuild makes one per event: a struct the garbage collector does not track is the
    cheapest to make (an envelope refers to its event, never the other way round)."""

    position: int
    stream_id: UUID
    version: int
    subject_id: UUID
    topic: str
    channel: str
    recorded_at: datetime
    key_version: int
    event: DomainEvent | None
    meta: EventMeta | None
    expired: bool = False

    @property
    def erased(self) -> bool:
        """The subject is erased: nothing of theirs is folded. (An expired placeholder is not
        erased: folds receive it, to count its version and skip its content.)"""
        return self.event is None and not self.expired


class VersionGap(Exception):
    """A stream's events skip a version: the view and the log disagree (an event is missing,
    or the view is not the one these events follow). An integrity violation: rebuild."""

    def __init__(self, stream_id: UUID, after: int, version: int) -> None:
        super().__init__(f"stream {stream_id}: version {version} does not follow version {after}")
        self.stream_id = stream_id
        self.after = after
        self.version = version
