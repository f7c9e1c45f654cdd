"""Connection pools and schema migrations on asyncpg."""

from __future__ import annotations

import asyncio
import re
from importlib import resources
from typing import Any

import asyncpg
from asyncpg.pool import PoolAcquireContext, PoolConnectionProxy

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


class BoundedPool(asyncpg.Pool):
    """A pool whose checkouts (`acquire`, and `fetch` and the like, which acquire) wait at most
    `acquire_timeout` seconds unless the caller names a timeout: with the database down, slow
    or every connection busy, a request fails fast (`TimeoutError`, answered 503) rather than
    queue without end. Making a new connection is part of the wait."""

    __slots__ = ("acquire_timeout",)

    def __init__(self, *args: Any, acquire_timeout: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.acquire_timeout = acquire_timeout

    def acquire(self, *, timeout: float | None = None) -> PoolAcquireContext:
        return super().acquire(timeout=self.acquire_timeout if timeout is None else timeout)


async def create_pool(
    dsn: str,
    schema: str,
    *,
    min_size: int = 2,
    max_size: int = 20,
    settings: dict[str, str] | None = None,
    acquire_timeout: float | None = None,
    statement_timeout: float | None = None,
    **kwargs: Any,
) -> asyncpg.Pool:
    """A pool whose connections all see `schema` first.

    The search path goes in server_settings so that no per-checkout reset is needed; the reset
    on release is skipped (see `_keep_session`). Idle connections are kept rather than closed
    after a while: asyncpg's idle timer is armed and cancelled on every release and checkout,
    about a tenth of a pooled query's cost in the client (the pool stays at most `max_size`).
    With `acquire_timeout`, a checkout (and the connecting it may need) waits at most that many
    seconds (`BoundedPool`); with `statement_timeout`, PostgreSQL cancels any statement of the
    pool's that runs longer, a lock wait included (`QueryCanceledError`).
    """
    check_schema_name(schema)
    server_settings = {"search_path": schema, "application_name": "continuity", **(settings or {})}
    if statement_timeout is not None:
        server_settings["statement_timeout"] = f"{round(statement_timeout * 1000)}ms"
    if acquire_timeout is not None:
        kwargs.setdefault("timeout", acquire_timeout)  # asyncpg's connect timeout
    options: dict[str, Any] = {
        "max_queries": 50_000,
        "max_inactive_connection_lifetime": 0.0,
        "reset": _keep_session,
        "loop": None,
        "connection_class": asyncpg.Connection,
        "record_class": asyncpg.Record,
        **kwargs,
    }
    pool = BoundedPool(
        dsn,
        acquire_timeout=acquire_timeout,
        min_size=min_size,
        max_size=max_size,
        server_settings=server_settings,
        **options,
    )
    await pool
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


DATABASE_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,  # a pooled connection the server cut while idle
)
"""What a loop that follows the database (a runner, a listener, a sweep) survives: it logs the
error and tries again later. Narrower than `Exception`, so that a bug still stops it loudly."""

_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable: no server to talk to
    TimeoutError,  # no pooled connection, or no connection made, within the pool's timeout
    asyncpg.PostgresConnectionError,  # class 08: the connection failed or was lost mid-query
    asyncpg.exceptions.OperatorInterventionError,  # class 57: statement timeout, shutting down
    asyncpg.exceptions.InternalClientError,  # a pooled connection the server cut while idle
)


def unavailable(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) says the database could not be reached or did not
    answer in time, rather than that a request or the code was wrong: the request may be
    retried as it is (with its `Idempotency-Key`, an action is then recorded exactly once)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, _UNAVAILABLE):
            return True
        if isinstance(cause, asyncpg.InterfaceError) and str(cause) in _CLOSED:
            return True
        cause = cause.__cause__
    return False


_CLOSED = {"connection is closed", "pool is closing"}
"""asyncpg's InterfaceErrors for a connection or pool that went away (its others are bugs)."""
