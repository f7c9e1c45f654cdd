"""The key vault: per-subject AES-256 data keys, stored only wrapped by the master key.

Unwrapped keys live in an LRU cache; erasure deletes the wrapped keys, writes a tombstone, and
tells every process (NOTIFY) to drop the key from its cache.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from privacy.cipher import SubjectKey
from privacy.errors import SubjectErased
from privacy.master_key import KEY_BYTES, KeyWrapper

_KEY_LOCK = 0x6B657973  # "keys": per-subject lock class for create/shred


def _wrap_context(subject_id: UUID, version: int) -> bytes:
    return b"continuity-dek-v1" + subject_id.bytes + version.to_bytes(4, "big")


@dataclass(frozen=True, slots=True)
class ShredReceipt:
    subject_id: UUID
    key_versions: list[int]
    erased_at: datetime
    events_unreadable: int
    already_erased: bool


class KeyVault:
    def __init__(
        self, pool: asyncpg.Pool, schema: str, wrapper: KeyWrapper, cache_size: int = 10_000
    ) -> None:
        self.pool = pool
        self.wrapper = wrapper
        self.channel = f"{schema}_keys"
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[UUID, int], SubjectKey] = OrderedDict()
        self._current: dict[UUID, int] = {}
        self._listener: PoolConnectionProxy | None = None

    async def start(self) -> None:
        """Listen for erasures made by other processes."""
        if self._listener is None:
            self._listener = await self.pool.acquire()
            await self._listener.add_listener(self.channel, self._on_erased)

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            await asyncio.shield(self._release(listener))

    async def _release(self, listener: PoolConnectionProxy) -> None:
        try:
            await listener.remove_listener(self.channel, self._on_erased)
        finally:
            await self.pool.release(listener)

    def _on_erased(self, _conn: object, _pid: object, _channel: object, payload: object) -> None:
        try:
            self.evict(UUID(str(payload)))
        except ValueError:
            return

    def evict(self, subject_id: UUID) -> None:
        self._current.pop(subject_id, None)
        for cached in [k for k in self._cache if k[0] == subject_id]:
            del self._cache[cached]

    def _remember(self, key: SubjectKey) -> SubjectKey:
        self._cache[(key.subject_id, key.version)] = key
        self._cache.move_to_end((key.subject_id, key.version))
        while len(self._cache) > self.cache_size:
            old, _ = self._cache.popitem(last=False)
            if self._current.get(old[0]) == old[1]:
                del self._current[old[0]]
        return key

    def _unwrap(self, subject_id: UUID, version: int, kek_id: str, wrapped: bytes) -> SubjectKey:
        raw = self.wrapper.unwrap(kek_id, wrapped, _wrap_context(subject_id, version))
        return SubjectKey.from_bytes(subject_id, version, raw)

    async def key_for_writing(self, subject_id: UUID) -> SubjectKey:
        """The subject's current key, created on first write; SubjectErased after erasure."""
        version = self._current.get(subject_id)
        if version is not None:
            cached = self._cache.get((subject_id, version))
            if cached is not None:
                self._cache.move_to_end((subject_id, version))
                return cached
        row = await self.pool.fetchrow(
            "SELECT key_version, kek_id, wrapped_key FROM subject_keys WHERE subject_id = $1"
            " ORDER BY key_version DESC LIMIT 1",
            subject_id,
        )
        if row is None:
            row = await self._create(subject_id)
        key = self._unwrap(subject_id, row["key_version"], row["kek_id"], row["wrapped_key"])
        self._current[subject_id] = key.version
        return self._remember(key)

    async def _create(self, subject_id: UUID) -> asyncpg.Record:
        data_key = secrets.token_bytes(KEY_BYTES)
        kek_id, wrapped = self.wrapper.wrap(data_key, _wrap_context(subject_id, 1))
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2::uuid::text))", _KEY_LOCK, subject_id
            )
            if await conn.fetchval(
                "SELECT true FROM erased_subjects WHERE subject_id = $1", subject_id
            ):
                raise SubjectErased(subject_id)
            await conn.execute(
                "INSERT INTO subject_keys (subject_id, key_version, kek_id, wrapped_key)"
                " VALUES ($1, 1, $2, $3) ON CONFLICT DO NOTHING",
                subject_id,
                kek_id,
                wrapped,
            )
            row = await conn.fetchrow(
                "SELECT key_version, kek_id, wrapped_key FROM subject_keys WHERE subject_id = $1"
                " ORDER BY key_version DESC LIMIT 1",
                subject_id,
            )
        assert row is not None
        return row

    async def keys_for_reading(
        self, wanted: Iterable[tuple[UUID, int]]
    ) -> dict[tuple[UUID, int], SubjectKey]:
        """The keys that still exist among `wanted`; shredded ones are simply absent."""
        found: dict[tuple[UUID, int], SubjectKey] = {}
        missing: list[tuple[UUID, int]] = []
        for pair in set(wanted):
            cached = self._cache.get(pair)
            if cached is None:
                missing.append(pair)
            else:
                found[pair] = cached
        if missing:
            rows = await self.pool.fetch(
                "SELECT k.subject_id, k.key_version, k.kek_id, k.wrapped_key"
                " FROM subject_keys k JOIN unnest($1::uuid[], $2::int[]) AS w(s, v)"
                " ON k.subject_id = w.s AND k.key_version = w.v",
                [p[0] for p in missing],
                [p[1] for p in missing],
            )
            for row in rows:
                key = self._unwrap(
                    row["subject_id"], row["key_version"], row["kek_id"], row["wrapped_key"]
                )
                found[(key.subject_id, key.version)] = self._remember(key)
        return found

    async def erased_among(self, subject_ids: Iterable[UUID]) -> set[UUID]:
        rows = await self.pool.fetch(
            "SELECT subject_id FROM erased_subjects WHERE subject_id = ANY($1::uuid[])",
            list(set(subject_ids)),
        )
        return {row[0] for row in rows}

    async def shred(
        self, conn: asyncpg.Connection | PoolConnectionProxy, subject_id: UUID
    ) -> ShredReceipt:
        """Destroy the subject's keys and leave a tombstone, inside the caller's transaction.

        Every process drops the key from its cache when the transaction commits (NOTIFY)."""
        await conn.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2::uuid::text))", _KEY_LOCK, subject_id
        )
        tomb = await conn.fetchrow(
            "SELECT erased_at, key_versions, events_unreadable FROM erased_subjects"
            " WHERE subject_id = $1",
            subject_id,
        )
        if tomb is not None:
            return ShredReceipt(
                subject_id,
                list(tomb["key_versions"]),
                tomb["erased_at"],
                tomb["events_unreadable"],
                already_erased=True,
            )
        versions = [
            row[0]
            for row in await conn.fetch(
                "DELETE FROM subject_keys WHERE subject_id = $1 RETURNING key_version", subject_id
            )
        ]
        events = await conn.fetchval(
            "SELECT count(*) FROM events WHERE subject_id = $1", subject_id
        )
        erased_at = await conn.fetchval(
            "INSERT INTO erased_subjects (subject_id, key_versions, events_unreadable)"
            " VALUES ($1, $2, $3) RETURNING erased_at",
            subject_id,
            sorted(versions),
            events,
        )
        await conn.execute("SELECT pg_notify($1, $2)", self.channel, str(subject_id))
        self.evict(subject_id)
        return ShredReceipt(subject_id, sorted(versions), erased_at, events, already_erased=False)

    async def rewrap_all(self, batch: int = 500) -> int:
        """Re-wrap every data key not under the current master key; events are untouched.

        Returns how many keys were re-wrapped. Safe to run again after an interruption."""
        total = 0
        while True:
            async with self.pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch(
                    "SELECT subject_id, key_version, kek_id, wrapped_key FROM subject_keys"
                    " WHERE kek_id <> $1 LIMIT $2 FOR UPDATE SKIP LOCKED",
                    self.wrapper.current_id,
                    batch,
                )
                for row in rows:
                    context = _wrap_context(row["subject_id"], row["key_version"])
                    raw = self.wrapper.unwrap(row["kek_id"], row["wrapped_key"], context)
                    kek_id, wrapped = self.wrapper.wrap(raw, context)
                    await conn.execute(
                        "UPDATE subject_keys SET kek_id = $3, wrapped_key = $4"
                        " WHERE subject_id = $1 AND key_version = $2",
                        row["subject_id"],
                        row["key_version"],
                        kek_id,
                        wrapped,
                    )
            total += len(rows)
            if len(rows) < batch:
                return total
