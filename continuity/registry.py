"""Every projection this process runs, by name: what an append folds inline, and what
`continuity projections` lists, shows and rebuilds (the catalog in `continuity.catalog` records
what the database holds)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from uuid import UUID

from continuity.db import Conn, Queryable
from continuity.group_commit import ViewWrite
from continuity.projection import Preparable, Projection, consumes, live
from projections.envelope import Envelope

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,40}")

Projected = dict[str, object]
"""What each inline projection returned for an append, by projection name."""

Reads = dict[str, Mapping[UUID, object]]
"""What each inline projection read of some subjects' rows before an append, by name."""


class UnknownProjection(LookupError):
    def __init__(self, name: str, known: Iterable[str]) -> None:
        super().__init__(f"no projection named {name!r} (known: {', '.join(sorted(known))})")
        self.name = name


class Registry:
    def __init__(self, projections: Iterable[Projection]) -> None:
        self._projections: dict[str, Projection] = {}
        owners: dict[str, str] = {}
        for projection in projections:
            if projection.name in self._projections:
                raise ValueError(f"two projections are named {projection.name!r}")
            self._projections[projection.name] = projection
            for table in projection.tables:
                if not _IDENTIFIER.fullmatch(table.name):
                    raise ValueError(f"{table.name!r} is not a plain lower-case table name")
                if table.name in owners:
                    raise ValueError(f"{table.name} is owned by {owners[table.name]} already")
                owners[table.name] = projection.name
        self.preparable = self._preparable()

    def __iter__(self) -> Iterator[Projection]:
        return iter(self._projections.values())

    def get(self, name: str) -> Projection:
        try:
            return self._projections[name]
        except KeyError:
            raise UnknownProjection(name, self._projections) from None

    async def apply_inline(self, conn: Conn, envelopes: list[Envelope]) -> Projected:
        """Fold an append's events into every inline projection that consumes them, inside the
        append's transaction."""
        projected: Projected = {}
        readable = [e for e in envelopes if not e.erased]
        for projection in self._projections.values():
            if projection.mode != "inline":
                continue
            wanted = [e for e in readable if consumes(projection, e.topic)]
            if wanted:
                projected[projection.name] = await projection.handle(conn, live(projection), wanted)
        return projected

    def _preparable(self) -> list[Preparable] | None:
        """The inline projections, if every one can prepare its rows ahead of an append."""
        inline = [p for p in self._projections.values() if p.mode == "inline"]
        ready = [p for p in inline if isinstance(p, Preparable)]
        return ready if len(ready) == len(inline) else None

    async def read_inline(self, conn: Queryable, subjects: Sequence[UUID]) -> Reads | None:
        """Every inline projection's rows of `subjects`, for `prepare_inline`; None if one of
        them cannot prepare its rows ahead of an append."""
        if self.preparable is None:
            return None
        return {p.name: await p.read(conn, subjects) for p in self.preparable}

    async def prepare_inline(
        self, reads: Reads, envelopes: list[Envelope]
    ) -> tuple[list[ViewWrite], Projected] | None:
        """The rows every inline projection writes for an append's `envelopes`, computed from
        `reads`; None if one of them needs to read inside the append's transaction."""
        writes: list[ViewWrite] = []
        projected: Projected = {}
        for projection in self.preparable or ():
            wanted = [e for e in envelopes if not e.erased and consumes(projection, e.topic)]
            if not wanted:
                continue
            read = reads.get(projection.name)
            if read is None:
                return None
            prepared = await projection.prepare(read, wanted)
            if prepared is None:
                return None
            writes += prepared[0]
            projected[projection.name] = prepared[1]
        return writes, projected
