"""The three ways of appending that the benchmark compares, each in a schema of its own.

- OURS: Cart events sealed by `EventMapper.seal_event` with the subject's key from the
  `KeyVault`, appended by `EventStore.append` with an expected version (the real write path).
- RAW: rows of the same shape and size INSERTed by plain asyncpg into a table with the same
  columns and indexes but no function, lock or trigger: the raw asyncpg ceiling.
- PEER: eventsourcing's own PostgreSQL recorder, with its JSON mapper and AES cipher.

Each contender is a context manager that creates its schema, prepares one writer per
`writers` (one aggregate, one subject each), yields their append operations, and drops the
schema afterwards.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import cast
from urllib.parse import unquote, urlsplit
from uuid import UUID, uuid4

import asyncpg
import psycopg
from eventsourcing.cipher import AESCipher
from eventsourcing.domain import DomainEvent
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Mapper,
    UUIDAsHex,
)
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.utils import Environment

from aggregates.cart import MAX_LINES, Cart
from aggregates.metadata import EventMeta
from bench.timing import AsyncOp, SyncOp
from continuity.db import close_pool, create_pool, migrate
from continuity.mapper import EventMapper
from continuity.store import EventStore, NewEvent
from privacy.cipher import SubjectKey
from privacy.master_key import Keyring, MasterKey
from privacy.vault import KeyVault

ITEM_NAME = "Espresso beans, whole, 1 kg"
UNIT_PRICE = Decimal("12.50")
SKUS = MAX_LINES
"""Cycled through: a cart holds at most MAX_LINES different items, and each line's quantity
stays far below MAX_QUANTITY in any run this benchmark makes (that is a million items a writer)."""
META = EventMeta(channel="web", device="bench-device-0001", actor_type="customer")


def new_schema(contender: str) -> str:
    return f"bench_{contender}_{uuid4().hex[:10]}"


async def drop_schema(dsn: str, schema: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


class CartFeed:
    """One writer's cart: the Opened event first, then batches of ItemAdded events."""

    def __init__(self) -> None:
        self.subject_id = uuid4()
        self.cart = Cart(subject_id=self.subject_id)
        self.stream_id: UUID = self.cart.id
        self._added = 0

    def pending(self) -> list[DomainEvent]:
        return cast("list[DomainEvent]", list(self.cart.collect_events()))

    def next_batch(self, size: int) -> list[DomainEvent]:
        for _ in range(size):
            sku = f"SKU-{self._added % SKUS:04d}"
            self.cart.add_item(sku, ITEM_NAME, UNIT_PRICE, 1)
            self._added += 1
        return self.pending()


def sample_row() -> NewEvent:
    """One of our sealed ItemAdded rows: RAW inserts rows of exactly its shape and size."""
    feed = CartFeed()
    feed.pending()
    key = SubjectKey.from_bytes(feed.subject_id, 1, os.urandom(32))
    return EventMapper.seal_event(key, META, feed.next_batch(1)[0], uuid4())


# -- OURS --------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def ours(dsn: str, writers: int, batch: int) -> AsyncIterator[list[AsyncOp]]:
    schema = new_schema("ours")
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn, schema)
    finally:
        await conn.close()
    size = writers + 3  # the writers, the vault's listener, the store's notifier, one spare
    pool = await create_pool(dsn, schema, min_size=size, max_size=size)
    store = EventStore(pool, schema)
    vault = KeyVault(pool, schema, Keyring([MasterKey.generate()]))
    await vault.start()
    try:
        yield [await _our_writer(store, vault, batch) for _ in range(writers)]
    finally:
        await store.aclose()
        await vault.close()
        await close_pool(pool)
        await drop_schema(dsn, schema)


async def _our_writer(store: EventStore, vault: KeyVault, batch: int) -> AsyncOp:
    feed = CartFeed()
    subject_id, stream_id = feed.subject_id, feed.stream_id
    key = await vault.key_for_writing(subject_id)  # creates the subject's key
    opened = [EventMapper.seal_event(key, META, e, uuid4()) for e in feed.pending()]
    await store.append(opened, {stream_id: 0})

    async def append() -> int:
        events = feed.next_batch(batch)
        key = await vault.key_for_writing(subject_id)
        rows = [EventMapper.seal_event(key, META, event, uuid4()) for event in events]
        await store.append(rows, {stream_id: events[0].originator_version - 1})
        return len(rows)

    return append


# -- RAW ---------------------------------------------------------------------------------------

_RAW_TABLE = """
CREATE SEQUENCE raw_events_position_seq AS bigint;
CREATE TABLE raw_events (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES);
ALTER TABLE raw_events
    ALTER position SET DEFAULT nextval('raw_events_position_seq'),
    ALTER tx_id SET DEFAULT pg_current_xact_id();
"""
"""The log's own columns, constraints and indexes (copied from the migrated `events` table),
without its function, lock or triggers."""
_RAW_COLUMNS = (
    "stream_id, version, event_id, subject_id, topic, channel, key_version, digest, payload"
)
_RAW_INSERT_ONE = (
    f"INSERT INTO raw_events ({_RAW_COLUMNS})"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING position"
)
_RAW_INSERT_MANY = (
    f"INSERT INTO raw_events ({_RAW_COLUMNS}) SELECT {_RAW_COLUMNS}"
    " FROM unnest($1::uuid[], $2::int[], $3::uuid[], $4::uuid[], $5::text[], $6::text[],"
    " $7::int[], $8::bytea[], $9::bytea[])"
    f" AS b({_RAW_COLUMNS}) RETURNING position"
)


@contextlib.asynccontextmanager
async def raw(dsn: str, writers: int, batch: int) -> AsyncIterator[list[AsyncOp]]:
    schema = new_schema("raw")
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn, schema)
        await conn.execute(f'SET search_path TO "{schema}";{_RAW_TABLE}')
    finally:
        await conn.close()
    size = writers + 1
    pool = await create_pool(dsn, schema, min_size=size, max_size=size)
    like = sample_row()
    try:
        yield [_raw_writer(pool, like, batch) for _ in range(writers)]
    finally:
        await close_pool(pool)
        await drop_schema(dsn, schema)


def _raw_writer(pool: asyncpg.Pool, like: NewEvent, batch: int) -> AsyncOp:
    stream_id, subject_id = uuid4(), uuid4()
    version = 0

    async def append_one() -> int:
        nonlocal version
        version += 1
        await pool.fetch(
            _RAW_INSERT_ONE,
            stream_id,
            version,
            uuid4(),
            subject_id,
            like.topic,
            like.channel,
            like.key_version,
            like.digest,
            like.payload,
        )
        return 1

    async def append_many() -> int:
        nonlocal version
        versions = list(range(version + 1, version + batch + 1))
        version += batch
        await pool.fetch(
            _RAW_INSERT_MANY,
            [stream_id] * batch,
            versions,
            [uuid4() for _ in range(batch)],
            [subject_id] * batch,
            [like.topic] * batch,
            [like.channel] * batch,
            [like.key_version] * batch,
            [like.digest] * batch,
            [like.payload] * batch,
        )
        return batch

    return append_one if batch == 1 else append_many


# -- PEER --------------------------------------------------------------------------------------


@contextlib.contextmanager
def peer(dsn: str, writers: int, batch: int) -> Iterator[list[SyncOp]]:
    schema = new_schema("peer")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    url = urlsplit(dsn)
    datastore = PostgresDatastore(
        dbname=unquote(url.path.lstrip("/")) or "postgres",
        host=url.hostname or "127.0.0.1",
        port=url.port or 5432,
        user=unquote(url.username or "postgres"),
        password=unquote(url.password or ""),
        pool_size=writers,
        schema=schema,
    )
    try:
        datastore.pool.open(wait=True, timeout=30)  # every connection ready before the first use
        recorder = PostgresApplicationRecorder(datastore)
        recorder.create_table()
        mapper = peer_mapper()
        yield [_peer_writer(recorder, mapper, batch) for _ in range(writers)]
    finally:
        datastore.close()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def peer_mapper() -> Mapper[UUID]:
    """eventsourcing's JSON mapper with the standard transcodings and its AES-GCM cipher."""
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    cipher = AESCipher(Environment(env={AESCipher.CIPHER_KEY: AESCipher.create_key(32)}))
    return Mapper(transcoder=transcoder, cipher=cipher)


def _peer_writer(recorder: PostgresApplicationRecorder, mapper: Mapper[UUID], batch: int) -> SyncOp:
    feed = CartFeed()
    recorder.insert_events([mapper.to_stored_event(e) for e in feed.pending()])

    def append() -> int:
        stored = [mapper.to_stored_event(event) for event in feed.next_batch(batch)]
        recorder.insert_events(stored)
        return len(stored)

    return append


def payload_sizes() -> dict[str, int]:
    """The stored payload of one ItemAdded event, in bytes, for OURS (= RAW) and PEER."""
    feed = CartFeed()
    feed.pending()
    peer_size = len(peer_mapper().to_stored_event(feed.next_batch(1)[0]).state)
    return {"ours": len(sample_row().payload), "peer": peer_size}
