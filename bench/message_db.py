"""MESSAGEDB: Message DB 1.3 (the npm package `@eventide/message-db`) as a benchmark contender.

Its own SQL install scripts, read from bench/peers/node_modules, go into a fresh schema of the
bench database. Adapted, without touching their logic: the hard-coded `message_store.` schema
qualifier becomes the fresh schema's name (the `message_store.debug*` setting names inside
strings are left as they are); the scripts that create the `message_store` schema and role, the
pgcrypto extension (`gen_random_uuid` is built in since PostgreSQL 13, and every write here
passes its id anyway), the reporting views and the role's privileges are not run. The functions
name the table and each other unqualified, so the pool's search path is the schema, which is
how Message DB's own clients call them.

A writer calls `write_message(id, stream_name, type, data, metadata, expected_version)` once per
event; a batch is one transaction of several calls, sent pipelined (asyncpg's `executemany`),
each with the next expected version, as Message DB's own clients write a batch. Streams are
`cart-<id>`, so every writer is in the `cart` category. The payload is the event's data as JSON
(jsonb, not encrypted) and the metadata as JSON: there is no encryption on this path.

`write_message` takes `pg_advisory_xact_lock(hash_64(category))`: a lock per category, held
through the commit, which keeps each category's global positions in commit order. Writers to
one category therefore take turns; readers of one category never skip a late commit, while
readers of all categories by global position can.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import uuid4

import asyncpg
import msgspec

from bench.contenders import META, CartFeed, drop_schema, new_schema
from bench.node_peers import node_modules
from bench.timing import AsyncOp
from continuity.db import close_pool, create_pool

SCRIPTS = (
    "types/message.sql",
    "tables/messages.sql",
    "functions/message-store-version.sql",
    "functions/hash-64.sql",
    "functions/acquire-lock.sql",
    "functions/category.sql",
    "functions/is-category.sql",
    "functions/id.sql",
    "functions/cardinal-id.sql",
    "functions/stream-version.sql",
    "functions/write-message.sql",
    "functions/get-stream-messages.sql",
    "functions/get-category-messages.sql",
    "functions/get-last-stream-message.sql",
    "indexes/messages-id.sql",
    "indexes/messages-stream.sql",
    "indexes/messages-category.sql",
)
"""The scripts install.sh runs, in its order, less the schema, role, extension, views and
privileges (see the module's docstring)."""

CATEGORY = "cart"
WRITE = "SELECT write_message($1, $2, $3, $4, $5, $6)"
_SCHEMA_QUALIFIER = re.compile(r"(?<!')\bmessage_store\.")


def database_scripts() -> Path:
    return node_modules() / "@eventide" / "message-db" / "database"


def install_sql(schema: str) -> str:
    """Message DB's install scripts, in order, with `message_store.` replaced by `schema`."""
    folder = database_scripts()
    return "\n".join(
        _SCHEMA_QUALIFIER.sub(f'"{schema}".', (folder / script).read_text()) for script in SCRIPTS
    )


async def install(conn: asyncpg.Connection, schema: str) -> None:
    await conn.execute(f'CREATE SCHEMA "{schema}"; SET search_path TO "{schema}";')
    await conn.execute(install_sql(schema))


def json_data(event: object) -> str:
    """A domain event's own fields as JSON (Decimals as strings), without the aggregate's
    id, version and timestamp, which Message DB keeps in its own columns."""
    fields = {
        name: value
        for name, value in vars(event).items()
        if name not in ("originator_id", "originator_version", "originator_topic", "timestamp")
    }
    return msgspec.json.encode(fields).decode()


METADATA = msgspec.json.encode(META).decode()


@contextlib.asynccontextmanager
async def message_db(
    dsn: str, writers: int, batch: int, *, schema: str | None = None
) -> AsyncIterator[list[AsyncOp]]:
    """Message DB in `schema` (default: a fresh name), dropped on the way out."""
    schema = schema or new_schema("messagedb")
    conn = await asyncpg.connect(dsn)
    try:
        await install(conn, schema)
    finally:
        await conn.close()
    size = writers + 1
    pool = await create_pool(dsn, schema, min_size=size, max_size=size)
    try:
        yield [await _writer(pool, batch) for _ in range(writers)]
    finally:
        await close_pool(pool)
        await drop_schema(dsn, schema)


async def _writer(pool: asyncpg.Pool, batch: int) -> AsyncOp:
    feed = CartFeed()
    stream_name = f"{CATEGORY}-{feed.stream_id}"
    version = -1  # Message DB's version of a stream with no message

    def rows(events: list[object]) -> list[tuple[str, str, str, str, str, int]]:
        return [
            (str(uuid4()), stream_name, type(e).__name__, json_data(e), METADATA, version + i)
            for i, e in enumerate(events)
        ]

    async def write(events: list[object]) -> int:
        nonlocal version
        if len(events) == 1:
            await pool.fetchval(WRITE, *rows(events)[0])
        else:
            async with pool.acquire() as conn, conn.transaction():
                await conn.executemany(WRITE, rows(events))
        version += len(events)
        return len(events)

    await write(list(feed.pending()))  # Opened

    async def append() -> int:
        return await write(list(feed.next_batch(batch)))

    return append
