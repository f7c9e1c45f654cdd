"""The append benchmark's npm peers write what they say: Message DB and Emmett, 2 writers for
half a second each, read back from their own tables. Skipped, with the reason, where node or
npm is missing or `npm ci` in bench/peers fails."""

from __future__ import annotations

from uuid import uuid4

import asyncpg
import pytest

from bench.emmett import emmett, with_database
from bench.message_db import message_db
from bench.node_peers import PeerUnavailable, node, node_modules
from bench.timing import drive_async

pytestmark = pytest.mark.anyio

WRITERS = 2
BATCH = 3


@pytest.fixture
def npm_peers() -> None:
    try:
        node_modules()
    except PeerUnavailable as error:
        pytest.skip(str(error))


@pytest.mark.usefixtures("npm_peers")
async def test_message_db_writes_whole_batches_in_stream_order(database_url: str) -> None:
    schema = f"test_messagedb_{uuid4().hex[:12]}"
    async with message_db(database_url, WRITERS, BATCH, schema=schema) as ops:
        measured = await drive_async(ops, 0.1, 0.5)
        conn = await asyncpg.connect(database_url)
        try:
            streams = await conn.fetch(
                f"SELECT stream_name, count(*) AS messages, max(position) AS last,"
                f" count(*) FILTER (WHERE type = 'ItemAdded') AS added,"
                f" count(*) FILTER (WHERE data->>'unit_price' = '12.50') AS priced"
                f' FROM "{schema}".messages GROUP BY stream_name'
            )
        finally:
            await conn.close()

    assert measured.appends > 0
    assert len(streams) == WRITERS
    assert sum(s["added"] for s in streams) >= measured.events
    for stream in streams:
        assert stream["stream_name"].startswith("cart-")
        assert stream["last"] == stream["messages"] - 1  # positions 0, 1, ... with no gap
        assert stream["added"] % BATCH == 0  # one Opened, then whole batches
        assert stream["priced"] == stream["added"]


@pytest.mark.usefixtures("npm_peers")
async def test_emmett_writes_whole_batches_in_stream_order(database_url: str) -> None:
    try:
        node()
    except PeerUnavailable as error:
        pytest.skip(str(error))
    database = f"test_emmett_{uuid4().hex[:12]}"
    admin = await asyncpg.connect(database_url)
    await admin.execute(f'CREATE DATABASE "{database}" TEMPLATE template0')
    try:
        measured = await emmett(database_url, WRITERS, BATCH, 0.1, 0.5, database=database)
        conn = await asyncpg.connect(with_database(database_url, database))
        try:
            streams = await conn.fetch(
                "SELECT s.stream_id, s.stream_position, count(*) AS messages,"
                " max(m.stream_position) AS last,"
                " count(*) FILTER (WHERE m.message_data->>'unit_price' = '12.50') AS priced"
                " FROM emt_streams s JOIN emt_messages m USING (stream_id)"
                " GROUP BY s.stream_id, s.stream_position"
            )
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()

    assert measured.appends > 0
    assert len(streams) == WRITERS
    assert sum(s["messages"] for s in streams) >= measured.events
    for stream in streams:
        assert stream["stream_id"].startswith("cart-")
        assert stream["stream_position"] == stream["last"] == stream["messages"]
        assert stream["messages"] % BATCH == 0
        assert stream["priced"] == stream["messages"]
