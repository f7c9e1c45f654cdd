"""A subject view: one document per data subject, folded from that subject's events.

The domain part is a pure `apply(state, envelope) -> state`. What every such view needs on top
is here, once: each stream's last folded version, so an event is folded exactly once whatever
order streams commit in (positions across streams are not commit order), and a gap in a stream's
versions is a `VersionGap` instead of a state built on a missing event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar
from uuid import UUID

import msgspec

from projections.envelope import Envelope, VersionGap
from projections.tables import SUBJECT_ROWS, Table

S = TypeVar("S", bound=msgspec.Struct)


class Folded(msgspec.Struct, Generic[S], frozen=True, gc=False):
    """The stored document: the view's state, the last version folded of each stream, and the
    highest position folded by a fold that knew the positions (for operators; it says nothing
    about what was folded). An append's group commit folds before its positions exist, so its
    document keeps the position it had, and the row's `position` column, which the commit
    sets, is the one to read. Documents are values (no cycles), so the garbage collector need
    not track them."""

    state: S
    streams: dict[UUID, int] = msgspec.field(default_factory=dict)
    position: int = 0


@dataclass(frozen=True)
class SubjectView(Generic[S]):
    """A projection with one sealed row per subject in `table`: `apply` folds one event into the
    state, starting from `state_type()`. Bump `version` when the fold or the state changes: a
    view whose rows were built by another version is rebuilt from the log."""

    name: str
    table: str
    state_type: type[S]
    apply: Callable[[S, Envelope], S]
    topics: tuple[str, ...] = ()
    version: int = 1

    @property
    def tables(self) -> tuple[Table, ...]:
        return (Table(self.table, SUBJECT_ROWS),)

    def empty(self) -> Folded[S]:
        return Folded(self.state_type())

    def follows(self, folded: Folded[S], envelopes: Iterable[Envelope]) -> bool:
        """Whether `envelopes` are exactly what comes next for `folded`: nothing already
        folded and no version skipped. A document they do not follow is rebuilt from the log,
        never folded onto (it may be a stale copy, or a write may be lost)."""
        streams = dict(folded.streams)
        for envelope in envelopes:
            if envelope.event is None and not envelope.expired:
                continue
            stream = envelope.stream_id
            if envelope.version != streams.get(stream, 0) + 1:
                return False
            streams[stream] = envelope.version
        return True

    def fold(self, folded: Folded[S], envelopes: Iterable[Envelope]) -> Folded[S]:
        """Fold `envelopes` of one subject: a repeat of a folded version is skipped, a skipped
        version raises VersionGap, an erased placeholder changes nothing, and an expired one
        (its period's key destroyed by retention) counts as its stream's version, unfolded."""
        state = folded.state
        streams = dict(folded.streams)
        position = folded.position
        for envelope in envelopes:
            if envelope.event is None and not envelope.expired:
                continue
            stream = envelope.stream_id
            last = streams.get(stream, 0)
            if envelope.version <= last:
                continue
            if envelope.version != last + 1:
                raise VersionGap(envelope.stream_id, last, envelope.version)
            if envelope.event is not None:
                state = self.apply(state, envelope)
            streams[stream] = envelope.version
            position = max(position, envelope.position)
        return Folded(state, streams, position)
