"""Connection pools and schema migrations on asyncpg."""

from __future__ import annotations

import asyncio
import re
from importlib import resources
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

Conn = asyncpg.Connection | PoolConnectionProxy
"""A connection, pooled or not: what runs SQL inside a caller's transaction."""

Queryable = asyncpg.Pool | asyncpg.Connection | PoolConnectionProxy
"""Anything with fetch/fetchrow/fetchval/execute: a pool or a connection."""

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_MIGRATIONS_LOCK = 0x636F6E74  # "cont": serialises concurrent migrators


def check_schema_name(schema: str) -> str:
    if not _SCHEMA_NAME.match(schema):
        raise ValueError(f"schema name {schema!r} must match {_SCHEMA_NAME.pattern}")
    return schema


async def create_pool(
    dsn: str,
    schema: str,
    *,
    min_size: int = 2,
    max_size: int = 20,
    settings: dict[str, str] | None = None,
    **kwargs: Any,
) -> asyncpg.Pool:
    """A pool whose connections all see `schema` first.

    The search path goes in server_settings so that no per-checkout reset is needed; the reset
    on release is skipped (see `_keep_session`). Idle connections are kept rather than closed
    after a while: asyncpg's idle timer is armed and cancelled on every release and checkout,
    about a tenth of a pooled query's cost in the client (the pool stays at most `max_size`).
    """
    check_schema_name(schema)
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        server_settings={
            "search_path": schema,
            "application_name": "continuity",
            **(settings or {}),
        },
        reset=_keep_session,
        **{"max_inactive_connection_lifetime": 0.0, **kwargs},
    )
    return pool


async def close_pool(pool: asyncpg.Pool, grace: float = 10.0) -> None:
    """Close a pool without hanging on a connection someone forgot to release."""
    try:
        await asyncio.wait_for(pool.close(), grace)
    except TimeoutError:
        pool.terminate()


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release without a reset query: nothing here leaves session state behind (append_events
    releases its advisory lock itself, LISTEN uses dedicated connections), and the default
    `RESET ALL; UNLISTEN *; ...` round trip costs about 30% of append throughput. asyncpg
    still rolls back a transaction left open."""


def migrations() -> list[tuple[int, str, str]]:
    """The bundled migrations as (version, name, sql), in order."""
    found = []
    for entry in resources.files("continuity.migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


async def migrate(conn: asyncpg.Connection, schema: str) -> list[str]:
    """Create `schema` if needed and apply the migrations it lacks; safe to run again and in
    parallel (an advisory lock serialises migrators). Returns the names applied."""
    check_schema_name(schema)
    applied: list[str] = []
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))", _MIGRATIONS_LOCK, schema
        )
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(f'SET LOCAL search_path TO "{schema}"')
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, name, sql in migrations():
            if version in done:
                continue
            await conn.execute(sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
            )
            applied.append(name)
    return applied
