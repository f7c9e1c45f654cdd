"""EMMETT: Emmett's PostgreSQL event store (npm `@event-driven-io/emmett-postgresql`) as a
benchmark contender, driven by bench/peers/emmett.mjs in a Node.js subprocess.

Each run gets a database of its own on the bench server, dropped afterwards: Emmett's schema
scripts look their functions and tables up by name in every schema of a database, so they
cannot share one with another copy of themselves. The driver appends the same ItemAdded data
and metadata as JSON as MESSAGEDB does (jsonb, not encrypted), with the expected stream version,
from N concurrent writers on one Node event loop, and prints a `Measurement` as JSON.

`emt_append_to_stream` takes no lock beyond the stream's own row (the version check is an
UPDATE of that row); each event row carries `pg_current_xact_id()`, and readers take only rows
below `pg_snapshot_xmin(pg_current_snapshot())`, ordered by (transaction id, global position):
no reader skips a late commit, and commits are not serialised. That is the same guarantee and
the same approach as our store's.
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlsplit, urlunsplit
from uuid import uuid4

import asyncpg
import msgspec

from bench.contenders import ITEM_NAME, META, UNIT_PRICE
from bench.node_peers import PEERS, node, node_modules
from bench.timing import Measurement

DRIVER = PEERS / "emmett.mjs"
DATA = msgspec.json.encode(
    {"sku": "SKU-0000", "name": ITEM_NAME, "unit_price": UNIT_PRICE, "quantity": 1}
).decode()
"""One ItemAdded's data as MESSAGEDB writes it; the driver cycles the SKU as CartFeed does."""
METADATA = msgspec.json.encode(META).decode()


def with_database(dsn: str, database: str) -> str:
    """`dsn` pointed at another database on the same server."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


async def emmett(
    dsn: str, writers: int, batch: int, warmup: float, seconds: float, *, database: str = ""
) -> Measurement:
    """One run in a fresh database (`database`, default a new name), dropped afterwards
    unless `database` was given."""
    command = [node(), str(DRIVER)]
    node_modules()
    name = database or f"bench_emmett_{uuid4().hex[:10]}"
    if not database:
        await _admin(dsn, f'CREATE DATABASE "{name}" TEMPLATE template0')
    try:
        process = await asyncio.create_subprocess_exec(
            *command,
            *("--url", with_database(dsn, name)),
            *("--writers", str(writers), "--batch", str(batch)),
            *("--warmup", str(warmup), "--seconds", str(seconds)),
            *("--data", DATA, "--metadata", METADATA),
            cwd=PEERS,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
    finally:
        if not database:
            await _admin(dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if process.returncode != 0:
        raise RuntimeError(f"the Emmett driver failed: {err.decode().strip()[-600:]}")
    return Measurement(**json.loads(out))


async def _admin(dsn: str, statement: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()
