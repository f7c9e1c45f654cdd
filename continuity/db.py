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
    on release is almost always skipped (see `_reset`).
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
        reset=_reset,
        **kwargs,
    )
    return pool


async def close_pool(pool: asyncpg.Pool, grace: float = 10.0) -> None:
    """Close a pool without hanging on a connection someone forgot to release."""
    try:
        await asyncio.wait_for(pool.close(), grace)
    except TimeoutError:
        pool.terminate()


_UNLOCK_ON_RELEASE: set[int] = set()


def unlock_on_release(conn: Conn) -> None:
    """Have the pool release this connection's session-level advisory locks when it comes
    back, after any cancelled statement has been waited for (see EventStore.append)."""
    _UNLOCK_ON_RELEASE.add(conn.get_server_pid())


async def _reset(conn: asyncpg.Connection) -> None:
    """The pool's reset on release. The default (`RESET ALL; UNLISTEN *; ...`) costs about 30%
    of append throughput and nothing here needs it: settings live in server_settings, LISTEN
    uses dedicated connections, and the one session-level lock (append_events') is released
    here only for a connection marked by `unlock_on_release`. asyncpg itself still rolls back a
    transaction left open."""
    pid = conn.get_server_pid()
    if pid in _UNLOCK_ON_RELEASE:
        _UNLOCK_ON_RELEASE.discard(pid)
        await conn.execute("SELECT pg_advisory_unlock_all()")


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
