"""What the framework runs: a projection's name, the topics it consumes, the tables it owns, how
it runs (inline or async), and how it applies a batch of events to its tables.

The same `handle` serves every way a projection is fed: inline in the append's transaction, by
the async runner from its checkpoint, and by a rebuild into side tables (`placement` says which
physical table stands for each table it owns). Erased subjects' placeholders never reach it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, Protocol, runtime_checkable
from uuid import UUID

from continuity.db import Conn, Queryable
from continuity.group_commit import ViewWrite
from projections.envelope import Envelope
from projections.tables import Table

Mode = Literal["inline", "async"]
Placement = Mapping[str, str]
"""Each table a projection owns, by name, to the physical table a batch goes to."""


class Projection(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def topics(self) -> Sequence[str]:
        """The topics it consumes; all, if empty."""

    @property
    def tables(self) -> Sequence[Table]: ...

    @property
    def mode(self) -> Mode: ...

    @property
    def version(self) -> int:
        """Bumped when the fold or the rows change: rows built by another version are
        rebuilt."""

    async def handle(self, conn: Conn, placement: Placement, envelopes: list[Envelope]) -> object:
        """Apply `envelopes` (in log order, none erased) inside the caller's transaction; what
        it returns is what an inline caller gets back (see `Registry.apply_inline`)."""


class Builder(Protocol):
    """What a rebuild feeds page after page, in transactions of its own, then flushes once."""

    async def feed(self, conn: Conn, envelopes: list[Envelope]) -> None: ...

    async def flush(self, conn: Conn) -> None: ...


@runtime_checkable
class Buildable(Protocol):
    """A projection that rebuilds faster than through `handle` (holding its rows in memory
    between pages, say) offers a builder for its side tables."""

    def builder(self, placement: Placement) -> Builder: ...


@runtime_checkable
class Preparable(Projection, Protocol):
    """An inline projection that computes its rows before the append, from rows read before
    it, so that a group commit writes them with the events (nothing read inside the
    transaction). A row changed since it was read refuses the append (ViewMoved)."""

    async def read(self, conn: Queryable, subjects: Sequence[UUID]) -> Mapping[UUID, object]:
        """What `prepare` needs of each subject's rows, as they are now."""

    async def prepare(
        self, read: Mapping[UUID, object], envelopes: list[Envelope]
    ) -> tuple[list[ViewWrite], object] | None:
        """The rows to write for `envelopes` (positions not yet known: 0) and what an inline
        caller gets back; None when it cannot tell without reading inside the transaction
        (then the append folds through `handle`)."""


def live(projection: Projection) -> Placement:
    return {table.name: table.name for table in projection.tables}


def consumes(projection: Projection, topic: str) -> bool:
    return not projection.topics or topic in projection.topics


def side(table: str) -> str:
    """Where a rebuild builds `table` before switching it in."""
    return f"{table}__next"
