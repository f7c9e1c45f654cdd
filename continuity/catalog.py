"""The projection catalog: which projections the database holds rows for, the fold version that
built them, and their tables. Erasure reads it to clear every projection's rows, including those
of a projection this process does not run."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from continuity.db import Conn, Queryable
from continuity.projection import Projection, side


@dataclass(frozen=True)
class Entry:
    name: str
    mode: str
    version: int
    tables: list[str]
    built_at: datetime | None
    built_to: int | None


async def entries(conn: Queryable) -> dict[str, Entry]:
    rows = await conn.fetch(
        "SELECT name, mode, version, tables, built_at, built_to FROM projections ORDER BY name"
    )
    return {row["name"]: Entry(**dict(row)) for row in rows}


async def record(conn: Conn, projection: Projection, built_to: int) -> None:
    """Note that `projection`'s tables now hold what its current version folds up to
    `built_to`."""
    await conn.execute(
        "INSERT INTO projections (name, mode, version, tables, subject_columns, built_at,"
        " built_to) VALUES ($1, $2, $3, $4, $5, now(), $6) ON CONFLICT (name) DO UPDATE SET"
        " mode = excluded.mode, version = excluded.version, tables = excluded.tables,"
        " subject_columns = excluded.subject_columns, built_at = excluded.built_at,"
        " built_to = excluded.built_to",
        projection.name,
        projection.mode,
        projection.version,
        [table.name for table in projection.tables],
        [table.subject_column for table in projection.tables],
        built_to,
    )


async def forget(conn: Conn, subject_id: UUID) -> int:
    """Delete the subject's rows from every table of every projection in the catalog, and from
    a rebuild's side tables if one is under way; returns how many rows went."""
    deleted = 0
    for row in await conn.fetch(
        "SELECT t.name, t.subject_column FROM projections p,"
        " unnest(p.tables, p.subject_columns) AS t(name, subject_column)"
        " WHERE t.subject_column IS NOT NULL ORDER BY t.name"
    ):
        for physical in (row["name"], side(row["name"])):
            if await conn.fetchval("SELECT to_regclass($1)", physical) is None:
                continue
            status = await conn.execute(
                f'DELETE FROM "{physical}" WHERE "{row["subject_column"]}" = $1', subject_id
            )
            deleted += int(status.split()[-1])
    return deleted


async def sealed_tables(conn: Queryable) -> list[tuple[str, str]]:
    """(table, subject column) of every projection table in the catalog, and of a rebuild's
    side table under way, whose rows record the key that sealed them (`key_version`)."""
    found: list[tuple[str, str]] = []
    for row in await conn.fetch(
        "SELECT t.name, t.subject_column FROM projections p,"
        " unnest(p.tables, p.subject_columns) AS t(name, subject_column)"
        " WHERE t.subject_column IS NOT NULL ORDER BY t.name"
    ):
        for physical in (row["name"], side(row["name"])):
            if await conn.fetchval(
                "SELECT EXISTS (SELECT FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND table_name = $1"
                " AND column_name = 'key_version')",
                physical,
            ):
                found.append((physical, row["subject_column"]))
    return found


async def forget_sealed(
    conn: Conn, tables: list[tuple[str, str]], subject_id: UUID, key_versions: list[int]
) -> int:
    """Delete the subject's rows sealed with one of `key_versions` (destroyed by retention)
    from `tables` (`sealed_tables`); returns how many rows went."""
    deleted = 0
    for table, column in tables:
        status = await conn.execute(
            f'DELETE FROM "{table}" WHERE "{column}" = $1 AND key_version = ANY($2::int[])',
            subject_id,
            key_versions,
        )
        deleted += int(status.split()[-1])
    return deleted
