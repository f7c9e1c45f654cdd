"""The baseline of the HTTP benchmark: a bare Litestar app in the same server setup as ours.

    .venv/bin/python -m bench.bare --database-url URL --schema NAME [--port 8001] [--workers 1]

Served by uvicorn as `continuity run` serves ours (uvloop, httptools, no access log, the same
number of workers), with an asyncpg pool of the same size. Each route does the least a request
of ours must do, and nothing else: no authentication, no encryption, no idempotency check.

- `POST /bare/events`: the body (our `AddItem`, parsed by msgspec as ours is) becomes ONE
  autocommit INSERT of a row shaped like an event of ours: the same columns, types and indexes
  as our `events` table, a payload the size of a sealed ItemAdded and a 16-byte digest.
- `GET /bare/session/{id}`: ONE read by primary key of a row shaped like our `session_views`,
  its body the size of a sealed session document of a cart with a few items.

`prepare` creates the schema and the session rows before the server starts.
"""

from __future__ import annotations

import argparse
import os
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Annotated
from uuid import UUID, uuid4

import asyncpg
import msgspec
import uvicorn
from litestar import Litestar, get, post
from litestar.datastructures import State
from litestar.exceptions import NotFoundException
from litestar.params import JSONBody, Parameter

from api.schemas import AddItem
from continuity.db import check_schema_name
from continuity.settings import Settings

EVENT_PAYLOAD_BYTES = 117
"""A sealed ItemAdded of ours as `bench.http` sends it (nonce, tag, msgpack of the event and
its metadata), measured on the log it seeds."""
SESSION_BODY_BYTES = 690
"""A sealed session document of a cart with four lines and one device (688-694 bytes, measured
the same way)."""
POOL_MIN_SIZE = Settings.pool_min_size
POOL_MAX_SIZE = Settings.pool_max_size
"""Our settings' defaults (`CONTINUITY_POOL_MIN_SIZE`, `CONTINUITY_POOL_MAX_SIZE`)."""

ENV_URL = "BENCH_BARE_DATABASE_URL"
ENV_SCHEMA = "BENCH_BARE_SCHEMA"

SCHEMA_SQL = """
CREATE SEQUENCE events_position_seq AS bigint;
CREATE TABLE events (
    position     bigint      PRIMARY KEY,
    tx_id        xid8        NOT NULL,
    stream_id    uuid        NOT NULL,
    version      integer     NOT NULL CHECK (version >= 0),
    event_id     uuid        NOT NULL,
    subject_id   uuid        NOT NULL,
    topic        text        NOT NULL,
    channel      text        NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    key_version  integer     NOT NULL,
    digest       bytea       NOT NULL,
    payload      bytea       NOT NULL,
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, version),
    CONSTRAINT events_event_id_key UNIQUE (event_id)
);
CREATE INDEX events_subject_idx ON events (subject_id);
CREATE INDEX events_topic_position_idx ON events (topic, position);
CREATE TABLE session_views (
    subject_id   uuid        PRIMARY KEY,
    key_version  integer     NOT NULL,
    position     bigint      NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    body         bytea       NOT NULL
);
"""

INSERT_SQL = """
INSERT INTO events (position, tx_id, stream_id, version, event_id, subject_id, topic, channel,
                    key_version, digest, payload)
VALUES (nextval('events_position_seq'), pg_current_xact_id(), $1, 1, $2, $3,
        'aggregates.cart:Cart.ItemAdded', 'web', 1, $4, $5)
RETURNING position
"""

SELECT_SQL = "SELECT key_version, position, body FROM session_views WHERE subject_id = $1"

PAYLOAD = secrets.token_bytes(EVENT_PAYLOAD_BYTES)
DIGEST = secrets.token_bytes(16)


class Appended(msgspec.Struct):
    position: int


class SessionRow(msgspec.Struct):
    subject_id: UUID
    key_version: int
    position: int
    body: bytes


def _pool(state: State) -> asyncpg.Pool:
    pool: asyncpg.Pool = state.pool
    return pool


@post("/bare/events", status_code=200)
async def append(
    state: State,
    data: JSONBody[AddItem],
    idempotency_key: Annotated[UUID, Parameter(header="Idempotency-Key")],
) -> Appended:
    """The key is the row's event id, as ours derives its event ids from it."""
    position: int = await _pool(state).fetchval(
        INSERT_SQL, uuid4(), idempotency_key, uuid4(), DIGEST, PAYLOAD
    )
    return Appended(position)


@get("/bare/session/{subject_id:uuid}")
async def session(state: State, subject_id: Annotated[UUID, Parameter()]) -> SessionRow:
    row = await _pool(state).fetchrow(SELECT_SQL, subject_id)
    if row is None:
        raise NotFoundException("no such session")
    return SessionRow(subject_id, row["key_version"], row["position"], row["body"])


@get("/bare/health")
async def health() -> str:
    return "ok"


async def _no_reset(_: asyncpg.Connection) -> None:
    """As our pool does: no reset query on release (see `continuity.db._keep_session`)."""


def create_app() -> Litestar:
    """The app, on the database and schema named by BENCH_BARE_DATABASE_URL and
    BENCH_BARE_SCHEMA (a factory, so that every uvicorn worker builds its own)."""
    url = os.environ[ENV_URL]
    schema = check_schema_name(os.environ[ENV_SCHEMA])

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(
            url,
            min_size=POOL_MIN_SIZE,
            max_size=POOL_MAX_SIZE,
            server_settings={"search_path": schema, "application_name": "bench-bare"},
            reset=_no_reset,
        )
        app.state.pool = pool
        try:
            yield
        finally:
            await pool.close()

    return Litestar(route_handlers=[append, session, health], lifespan=[lifespan])


async def prepare(url: str, schema: str, sessions: Sequence[UUID]) -> None:
    """Create `schema` with the bare tables, and a session row for each of `sessions`."""
    check_schema_name(schema)
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.execute(f'CREATE SCHEMA "{schema}"; SET LOCAL search_path = "{schema}"')
            await conn.execute(SCHEMA_SQL)
            await conn.executemany(
                "INSERT INTO session_views (subject_id, key_version, position, body)"
                " VALUES ($1, 1, $2, $3)",
                [
                    (subject, n, secrets.token_bytes(SESSION_BODY_BYTES))
                    for n, subject in enumerate(sessions, 1)
                ],
            )
    finally:
        await conn.close()


def serve(host: str, port: int, workers: int) -> None:
    uvicorn.run(
        "bench.bare:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers if workers > 1 else None,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bare", description=__doc__)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--schema", required=True, help="made by bench.bare.prepare")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    os.environ[ENV_URL] = args.database_url
    os.environ[ENV_SCHEMA] = check_schema_name(args.schema)
    serve(args.host, args.port, args.workers)


if __name__ == "__main__":
    main()
