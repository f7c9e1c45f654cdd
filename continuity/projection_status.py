"""Where each projection stands, for `continuity projections status`: the fold version its rows
were built by, the log position they reflect, and how far behind the log that is."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from continuity import catalog
from continuity.db import Queryable
from continuity.projection import Projection


@dataclass(frozen=True)
class Status:
    name: str
    mode: str
    version: int
    built_version: int | None
    built_at: datetime | None
    position: int
    head: int
    behind: int
    rows: dict[str, int | None]

    @property
    def state(self) -> str:
        if self.built_version is None or None in self.rows.values():
            return "not built"
        if self.built_version != self.version:
            return f"stale (built by version {self.built_version})"
        return "current" if self.behind == 0 else "catching up"


@dataclass(frozen=True)
class Lag:
    position: int
    head: int
    behind: int


BEHIND_CAP = 100_000
"""`lag` counts at most this many events behind: enough to alert on, and a scrape stays cheap
however far behind a projection is."""


async def lag(conn: Queryable, projection: Projection, cap: int | None = BEHIND_CAP) -> Lag:
    """Inline projections reflect every committed event once built (the append wrote them); an
    async one reflects its checkpoint, and `behind` counts the events of its topics after it
    (up to `cap`; None counts them all)."""
    head = await conn.fetchval("SELECT coalesce(max(position), 0) FROM events")
    if projection.mode == "inline":
        built = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM projections WHERE name = $1)", projection.name
        )
        position = head if built else 0
    else:
        position = await conn.fetchval(
            "SELECT coalesce(max(position), 0) FROM tracking WHERE name = $1", projection.name
        )
    behind = await conn.fetchval(
        "SELECT count(*) FROM (SELECT 1 FROM events WHERE position > $1"
        " AND (cardinality($2::text[]) = 0 OR topic = ANY($2::text[])) LIMIT $3) AS after",
        position,
        list(projection.topics),
        cap,
    )
    return Lag(position, head, behind)


async def status(conn: Queryable, projection: Projection) -> Status:
    """Where `projection` stands (`lag`, uncapped), with its catalog entry and row counts."""
    entry = (await catalog.entries(conn)).get(projection.name)
    found = await lag(conn, projection, cap=None)
    position, head, behind = found.position, found.head, found.behind
    rows: dict[str, int | None] = {}
    for table in projection.tables:
        exists = await conn.fetchval("SELECT to_regclass($1)", table.name)
        rows[table.name] = (
            await conn.fetchval(f"SELECT count(*) FROM {table.name}") if exists else None
        )
    return Status(
        name=projection.name,
        mode=projection.mode,
        version=projection.version,
        built_version=entry.version if entry else None,
        built_at=entry.built_at if entry else None,
        position=position,
        head=head,
        behind=behind,
        rows=rows,
    )


async def reached(conn: Queryable, projection: Projection, position: int) -> bool:
    """Whether `projection`'s rows reflect every event of its topics up to `position`: an
    inline one always does once built; an async one when its checkpoint is there, or no event
    it consumes lies between the two."""
    if projection.mode == "inline":
        return True
    answer: bool = await conn.fetchval(
        "SELECT NOT EXISTS (SELECT 1 FROM events WHERE position <= $2 AND position >"
        " (SELECT coalesce(max(position), 0) FROM tracking WHERE name = $1)"
        " AND (cardinality($3::text[]) = 0 OR topic = ANY($3::text[])))",
        projection.name,
        position,
        list(projection.topics),
    )
    return answer
