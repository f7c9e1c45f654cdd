"""The key vault: per-subject AES-256 data keys, stored only wrapped by the master key (KEK),
and the system keys that no erasure touches (`privacy.system_keys`).

`key_version` names one of a subject's keys: one increasing number per subject. Each key has a
class (`GENERAL`, or `CONVERSATION` for transcript turns) and, once keys roll over (`period`), a
period it is written in: the key for writing is the class's newest, and a new one is created
when the clock passes its period's end (migration 0020). Readers ask for the version each row
records, whatever its class or period. Retention (`expire`) destroys the keys of periods past a
policy's age, so what they sealed reads as placeholders while the log keeps every row.

Unwrapped keys live in an LRU cache. Erasure deletes the wrapped keys, writes a tombstone, and
tells every process (NOTIFY on `<schema>_keys`) to drop the key. Three rules keep an erased
subject's key out of the cache even when a fetch races the erasure:

1. The vault remembers the erased subjects it has heard of (a NOTIFY, including the one its own
   shred sends on commit, or a tombstone met on a fetch) and neither caches nor hands out for
   writing any key of theirs.
2. Every eviction and every clear moves an epoch, and a fetch caches what it read only if the
   epoch it started in is still current. A key read before an erasure committed therefore never
   lands in the cache after the eviction, whichever answer the event loop sees first.
3. Nothing is cached unless the LISTEN connection is up. When it is lost (its termination
   callback, or a liveness probe that fails) the cache is cleared and caching stops; a task
   reconnects with back-off, and once LISTEN is back the cache is cleared again, since erasures
   committed in the gap were never heard.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg
import msgspec
from asyncpg.pool import PoolConnectionProxy

from privacy.cipher import SubjectKey, SystemKey
from privacy.errors import SubjectErased
from privacy.master_key import KEY_BYTES, KeyWrapper, Signer
from privacy.rewrap import rewrap_table
from privacy.system_keys import SystemKeys

Queryable = asyncpg.Pool | asyncpg.Connection | PoolConnectionProxy

# "keys": the per-subject lock class, taken exclusively by key creation (subject_keys_for_writing,
# migration 0020), shred and expire, shared by appends.
_KEY_LOCK = 0x6B657973

logger = logging.getLogger(__name__)

ERASED = "erased"
"""The kind of broadcast that says a subject's keys are destroyed."""
EXPIRED = "expired"
"""The kind of broadcast that says some of a subject's keys were destroyed by retention: the
subject's cached keys are dropped (those still there are fetched again)."""

GENERAL = "general"
"""The class of key that seals a subject's data unless another class says otherwise."""
CONVERSATION = "conversation"
"""The class of key that seals conversation transcripts' turns, which retention may expire
while the conversation itself (its status, who has it) stays readable."""


def _wrap_context(subject_id: UUID, version: int) -> bytes:
    return b"continuity-dek-v1" + subject_id.bytes + version.to_bytes(4, "big")


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class ExpiryReceipt:
    """What `expire` destroyed of one subject's keys."""

    subject_id: UUID
    key_versions: list[int]
    events_unreadable: int


@dataclass(frozen=True, slots=True)
class ShredReceipt:
    subject_id: UUID
    key_versions: list[int]
    erased_at: datetime
    already_erased: bool


class UnreadableStream(msgspec.Struct, frozen=True):
    """One of an erased subject's streams, and how many of its events no key opens."""

    stream_id: UUID
    events: int


class KeyVault:
    """Per-subject data keys for one process: fetched, created, cached, shredded, re-wrapped.

    `cache_size` bounds the cached subjects; `erased_memory` bounds the erased subjects kept in
    memory (forgetting an old one is safe: its keys are gone from the database, and a fetch
    that read them before the erasure cannot cache them, by the epoch). `retry_delay` starts
    the LISTEN reconnect back-off, doubling up to `retry_max_delay` (short: a database back
    from a restart is heard within it, and a refused connect costs nothing); every
    `liveness_interval` seconds a probe that takes more than `probe_timeout` counts the LISTEN
    connection as lost.
    `period` is how long a key is written with before the next one is created (None: keys do
    not roll over); `clock` says when now is (tests move it).
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        schema: str,
        wrapper: KeyWrapper,
        cache_size: int = 10_000,
        *,
        erased_memory: int = 100_000,
        retry_delay: float = 0.5,
        retry_max_delay: float = 2.0,
        liveness_interval: float = 10.0,
        probe_timeout: float = 5.0,
        period: timedelta | None = None,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.pool = pool
        self.wrapper = wrapper
        self.channel = f"{schema}_keys"
        self.cache_size = cache_size
        self.erased_memory = erased_memory
        self.retry_delay = retry_delay
        self.retry_max_delay = retry_max_delay
        self.liveness_interval = liveness_interval
        self.probe_timeout = probe_timeout
        self.period = period
        self.clock = clock
        self._cache: OrderedDict[UUID, dict[int, SubjectKey]] = OrderedDict()
        self._current: dict[UUID, dict[str, tuple[int, datetime | None]]] = {}
        """Per subject and class: the version for writing and the end of its period."""
        self._erased: OrderedDict[UUID, None] = OrderedDict()
        self._epoch = 0
        self._listening = False
        self._listener: PoolConnectionProxy | None = None
        self._lost = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._system = SystemKeys(pool)

    @property
    def listening(self) -> bool:
        """Whether erasures by other processes reach this vault now (and so keys are cached)."""
        return self._listening

    async def start(self) -> None:
        """Listen for erasures made by other processes, and keep listening until close()."""
        if self._supervisor is None:
            await self._listen()
            self._supervisor = asyncio.create_task(
                self._keep_listening(), name=f"continuity-keys-listener:{self.channel}"
            )

    async def close(self) -> None:
        """Stop listening and give the connection back; returns promptly even mid-reconnect."""
        task, self._supervisor = self._supervisor, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
            await self._drop_listener(gracefully=True)  # a task cancelled before it ran never did
            if not task.cancelled():
                task.result()

    async def _listen(self) -> None:
        listener = await self.pool.acquire(timeout=self.probe_timeout)
        try:
            listener.add_termination_listener(self._on_terminated)
            await asyncio.wait_for(
                listener.add_listener(self.channel, self._on_erased), self.probe_timeout
            )
        except BaseException:
            await self._let_go(listener, gracefully=False)
            raise
        self._listener = listener
        self._lost.clear()
        self._clear()
        self._listening = True

    async def _keep_listening(self) -> None:
        """Watch the LISTEN connection; when it is lost, reconnect with back-off."""
        try:
            while True:
                await self._watch()
                logger.warning(
                    "key vault: lost the LISTEN connection on %s; key cache off until it is back",
                    self.channel,
                )
                await self._drop_listener(gracefully=False)
                delay = self.retry_delay
                while True:
                    try:
                        await self._listen()
                        break
                    except Exception as exc:  # whatever the cause, try again later
                        logger.warning(
                            "key vault: cannot LISTEN on %s (%s: %s); retrying in %.2fs",
                            self.channel,
                            type(exc).__name__,
                            exc,
                            delay,
                        )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.retry_max_delay)
                logger.info("key vault: listening on %s again", self.channel)
        finally:
            await self._drop_listener(gracefully=True)

    async def _watch(self) -> None:
        """Return once the LISTEN connection is lost: terminated, or failing its probe."""
        listener = self._listener
        assert listener is not None
        while True:
            try:
                await asyncio.wait_for(self._lost.wait(), self.liveness_interval)
                return
            except TimeoutError:
                pass
            try:
                await asyncio.wait_for(listener.fetchval("SELECT 1"), self.probe_timeout)
            except Exception:  # closed, reset or silent: lost either way
                return

    def _on_terminated(self, conn: object) -> None:
        if conn is self._listener:
            self._lose()

    def _lose(self) -> None:
        """Stop caching at once: erasures are not heard from now until LISTEN is back."""
        self._listening = False
        self._clear()
        self._lost.set()

    async def _drop_listener(self, *, gracefully: bool) -> None:
        self._lose()
        listener, self._listener = self._listener, None
        if listener is not None:
            await asyncio.shield(self._let_go(listener, gracefully=gracefully))

    async def _let_go(self, listener: PoolConnectionProxy, *, gracefully: bool) -> None:
        """Return a listener to the pool: healthy without its callbacks, or else terminated."""
        try:
            if gracefully:
                listener.remove_termination_listener(self._on_terminated)
                await asyncio.wait_for(
                    listener.remove_listener(self.channel, self._on_erased), self.probe_timeout
                )
            else:
                listener.terminate()
        except (asyncpg.InterfaceError, asyncpg.PostgresError, OSError, TimeoutError):
            with contextlib.suppress(asyncpg.InterfaceError):  # already closed and detached
                listener.terminate()
        await self.pool.release(listener)  # nothing to do once terminated

    def _on_erased(self, _conn: object, _pid: object, _channel: object, payload: object) -> None:
        try:
            subject_id = UUID(str(payload))
        except ValueError:
            return
        # One line per process that heard it: with several workers, each must say so.
        logger.info("key vault: subject %s erased; their keys are out of this process", subject_id)
        self._learn_erased(subject_id)

    def _learn_erased(self, subject_id: UUID) -> None:
        if subject_id in self._erased:
            self._erased.move_to_end(subject_id)
            return
        self._erased[subject_id] = None
        while len(self._erased) > self.erased_memory:
            self._erased.popitem(last=False)
        self.evict(subject_id)

    def on_broadcast(self, kind: str, target: UUID) -> None:
        """A broadcast every process applies and acknowledges (`continuity.processes`): for
        `ERASED`, the subject's keys leave this process, so an erasure that waits for every
        live process's acknowledgement knows no process holds them any more; for `EXPIRED`,
        likewise for the keys retention destroyed (the subject's others are fetched again)."""
        if kind == ERASED:
            self._learn_erased(target)
        elif kind == EXPIRED:
            self.evict(target)

    def drop_cache(self) -> None:
        """Forget every cached key: broadcasts may have been missed."""
        self._clear()

    def evict(self, subject_id: UUID) -> None:
        """Drop the subject's keys from the cache, and keep fetches in flight from caching."""
        self._cache.pop(subject_id, None)
        self._current.pop(subject_id, None)
        self._epoch += 1

    def _clear(self) -> None:
        self._cache.clear()
        self._current.clear()
        self._epoch += 1

    def _cached(self, subject_id: UUID, version: int) -> SubjectKey | None:
        keys = self._cache.get(subject_id)
        key = None if keys is None else keys.get(version)
        if key is not None:
            self._cache.move_to_end(subject_id)
        return key

    def _remember(
        self,
        key: SubjectKey,
        epoch: int,
        *,
        current: tuple[str, datetime | None] | None = None,
    ) -> None:
        """Cache `key`, fetched in `epoch`, unless an eviction or a clear came in between (the
        key may have been read before an erasure committed) or nobody is listening."""
        subject_id = key.subject_id
        if not self._listening or epoch != self._epoch:
            return
        keys = self._cache.get(subject_id)
        if keys is None:
            keys = self._cache[subject_id] = {}
        self._cache.move_to_end(subject_id)
        keys[key.version] = key
        if current is not None:
            key_class, not_after = current
            self._current.setdefault(subject_id, {})[key_class] = (key.version, not_after)
        while len(self._cache) > self.cache_size:
            old, _ = self._cache.popitem(last=False)
            self._current.pop(old, None)

    def _unwrap(self, subject_id: UUID, version: int, kek_id: str, wrapped: bytes) -> SubjectKey:
        raw = self.wrapper.unwrap(kek_id, wrapped, _wrap_context(subject_id, version))
        return SubjectKey.from_bytes(subject_id, version, raw)

    def _usable(self, not_after: datetime | None, now: datetime) -> bool:
        """Whether a key whose period ends at `not_after` is the one to write with at `now`
        (the rule `subject_keys_for_writing` applies, migration 0020)."""
        if self.period is None:
            return not_after is None
        return not_after is not None and now < not_after

    async def key_for_writing(self, subject_id: UUID, key_class: str = GENERAL) -> SubjectKey:
        """The subject's current key of `key_class`, created on first write and once its period
        has ended; SubjectErased after erasure."""
        if subject_id in self._erased:
            raise SubjectErased(subject_id)
        now = self.clock()
        current = self._current.get(subject_id, {}).get(key_class)
        if current is not None and self._usable(current[1], now):
            cached = self._cached(subject_id, current[0])
            if cached is not None:
                return cached
        epoch = self._epoch
        version = 1 if current is None else current[0] + 1  # the next version, most likely
        for _ in range(5):  # each turn but the first follows a version another process took
            data_key = secrets.token_bytes(KEY_BYTES)  # used only if a key is created
            kek_id, wrapped = self.wrapper.wrap(data_key, _wrap_context(subject_id, version))
            try:
                row = await self.pool.fetchrow(
                    "SELECT key_version, kek_id, wrapped_key, not_after"
                    " FROM subject_keys_for_writing($1, $2, $3, $4, $5, $6, $7)",
                    subject_id,
                    key_class,
                    now,
                    self.period,
                    version,
                    kek_id,
                    wrapped,
                )
            except asyncpg.PostgresError as exc:
                if exc.sqlstate != "CY410":
                    raise
                self._learn_erased(subject_id)
                raise SubjectErased(subject_id) from None
            assert row is not None
            if row["wrapped_key"] is not None:
                break
            version = row["key_version"]  # a key is due at another version: wrap for it
        else:
            raise RuntimeError(f"no key for writing for subject {subject_id}: too much contention")
        if subject_id in self._erased:  # heard of the erasure while fetching
            raise SubjectErased(subject_id)
        key = self._unwrap(subject_id, row["key_version"], row["kek_id"], row["wrapped_key"])
        self._remember(key, epoch, current=(key_class, row["not_after"]))
        return key

    async def keys_for_reading(
        self, wanted: Iterable[tuple[UUID, int]], conn: Queryable | None = None
    ) -> dict[tuple[UUID, int], SubjectKey]:
        """The keys that still exist among `wanted`; shredded ones are simply absent. Keys not
        cached are read on `conn` if given (a caller inside a transaction needs no second
        connection)."""
        found: dict[tuple[UUID, int], SubjectKey] = {}
        missing: list[tuple[UUID, int]] = []
        for pair in set(wanted):
            cached = self._cached(*pair)
            if cached is None:
                missing.append(pair)
            else:
                found[pair] = cached
        if missing:
            epoch = self._epoch
            rows = await (conn or self.pool).fetch(
                "SELECT k.subject_id, k.key_version, k.kek_id, k.wrapped_key"
                " FROM subject_keys k JOIN unnest($1::uuid[], $2::int[]) AS w(s, v)"
                " ON k.subject_id = w.s AND k.key_version = w.v",
                [p[0] for p in missing],
                [p[1] for p in missing],
            )
            for row in rows:
                if row["subject_id"] in self._erased:  # heard of the erasure while fetching
                    continue
                key = self._unwrap(
                    row["subject_id"], row["key_version"], row["kek_id"], row["wrapped_key"]
                )
                found[(key.subject_id, key.version)] = key
                self._remember(key, epoch)
        return found

    async def keys_of(self, subject_id: UUID, key_class: str = GENERAL) -> list[SubjectKey]:
        """Every key of `key_class` the subject still has, newest first."""
        versions = await self.pool.fetch(
            "SELECT key_version FROM subject_keys WHERE subject_id = $1 AND key_class = $2",
            subject_id,
            key_class,
        )
        keys = await self.keys_for_reading((subject_id, row[0]) for row in versions)
        return sorted(keys.values(), key=lambda key: -key.version)

    async def newest_versions(
        self, subject_ids: Iterable[UUID], key_class: str, conn: Queryable | None = None
    ) -> dict[UUID, int]:
        """Each subject's newest key version of `key_class` (none for a subject without one);
        nothing is created."""
        rows = await (conn or self.pool).fetch(
            "SELECT subject_id, max(key_version) FROM subject_keys"
            " WHERE subject_id = ANY($1::uuid[]) AND key_class = $2 GROUP BY subject_id",
            list(set(subject_ids)),
            key_class,
        )
        return {row[0]: row[1] for row in rows}

    async def expired_among(
        self, wanted: Iterable[tuple[UUID, int]], conn: Queryable | None = None
    ) -> set[tuple[UUID, int]]:
        """Which of `wanted` (subject, key version) retention destroyed."""
        pairs = list(set(wanted))
        rows = await (conn or self.pool).fetch(
            "SELECT x.subject_id, x.key_version FROM expired_subject_keys x"
            " JOIN unnest($1::uuid[], $2::int[]) AS w(s, v)"
            " ON x.subject_id = w.s AND x.key_version = w.v",
            [p[0] for p in pairs],
            [p[1] for p in pairs],
        )
        return {(row[0], row[1]) for row in rows}

    async def expire(
        self,
        conn: asyncpg.Connection | PoolConnectionProxy,
        subject_id: UUID,
        versions: Iterable[int],
        run_id: UUID,
    ) -> ExpiryReceipt:
        """Destroy the subject's keys of `versions` (periods past retention), inside the
        caller's transaction, leaving a tombstone for each, under the lock an erasure takes.
        The caller broadcasts `EXPIRED` so every process drops them from its cache; this one
        drops them now (a rolled-back expiry only costs a fetch)."""
        await conn.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2::uuid::text))", _KEY_LOCK, subject_id
        )
        rows = await conn.fetch(
            "WITH gone AS (DELETE FROM subject_keys WHERE subject_id = $1"
            " AND key_version = ANY($2::int[])"
            " RETURNING subject_id, key_version, key_class, not_before, created_at, not_after)"
            " INSERT INTO expired_subject_keys (subject_id, key_version, key_class, not_before,"
            " not_after, run_id) SELECT subject_id, key_version, key_class,"
            " coalesce(not_before, created_at), not_after, $3 FROM gone"
            " RETURNING key_version",
            subject_id,
            sorted(set(versions)),
            run_id,
        )
        destroyed = sorted(row[0] for row in rows)
        events = 0
        if destroyed:
            events = await conn.fetchval(
                "SELECT count(*) FROM events WHERE subject_id = $1"
                " AND key_version = ANY($2::int[])",
                subject_id,
                destroyed,
            )
        self.evict(subject_id)
        return ExpiryReceipt(subject_id, destroyed, events)

    async def erased_among(
        self, subject_ids: Iterable[UUID], conn: Queryable | None = None
    ) -> set[UUID]:
        rows = await (conn or self.pool).fetch(
            "SELECT subject_id FROM erased_subjects WHERE subject_id = ANY($1::uuid[])",
            list(set(subject_ids)),
        )
        erased = {row[0] for row in rows}
        for subject_id in erased:
            self._learn_erased(subject_id)
        return erased

    async def hold_off_erasure(
        self, conn: asyncpg.Connection | PoolConnectionProxy, subject_ids: Iterable[UUID]
    ) -> None:
        """Take each subject's key lock, shared, until the caller's transaction ends, as an
        append does: an erasure of one of them waits for the transaction, then deletes what
        it wrote. An erasure that committed before is seen by `erased_among` on `conn`."""
        await conn.execute(
            "SELECT pg_advisory_xact_lock_shared($1, hashtext(s::text))"
            " FROM unnest($2::uuid[]) AS s",
            _KEY_LOCK,
            sorted(set(subject_ids)),
        )

    async def shred(
        self, conn: asyncpg.Connection | PoolConnectionProxy, subject_id: UUID
    ) -> ShredReceipt:
        """Destroy the subject's keys and leave a tombstone, inside the caller's transaction.

        Every process drops the key from its cache when the transaction commits (NOTIFY), and
        so does this one: its own listener hears that NOTIFY too. It is not marked erased here,
        before the caller commits, since a rolled-back erasure must not leave a live subject
        refused. The cost does not grow with the subject's history: the tombstone's event
        count is left for `count_unreadable`, after the keys are gone."""
        await conn.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2::uuid::text))", _KEY_LOCK, subject_id
        )
        tomb = await conn.fetchrow(
            "SELECT erased_at, key_versions FROM erased_subjects WHERE subject_id = $1",
            subject_id,
        )
        if tomb is not None:
            return ShredReceipt(
                subject_id, list(tomb["key_versions"]), tomb["erased_at"], already_erased=True
            )
        versions = [
            row[0]
            for row in await conn.fetch(
                "DELETE FROM subject_keys WHERE subject_id = $1 RETURNING key_version", subject_id
            )
        ]
        erased_at = await conn.fetchval(
            "INSERT INTO erased_subjects (subject_id, key_versions) VALUES ($1, $2)"
            " RETURNING erased_at",
            subject_id,
            sorted(versions),
        )
        await conn.execute("SELECT pg_notify($1, $2)", self.channel, str(subject_id))
        self.evict(subject_id)
        return ShredReceipt(subject_id, sorted(versions), erased_at, already_erased=False)

    async def count_unreadable(self, conn: Queryable, subject_id: UUID) -> list[UnreadableStream]:
        """The erased subject's streams and how many events each holds that no key opens now,
        noted on the tombstone. Counted after the erasure committed: no event of theirs can be
        appended since, so the figure is final."""
        rows = await conn.fetch(
            "SELECT stream_id, count(*) AS events FROM events WHERE subject_id = $1"
            " GROUP BY stream_id ORDER BY stream_id",
            subject_id,
        )
        streams = [UnreadableStream(row["stream_id"], row["events"]) for row in rows]
        await conn.execute(
            "UPDATE erased_subjects SET events_unreadable = $2"
            " WHERE subject_id = $1 AND events_unreadable IS DISTINCT FROM $2",
            subject_id,
            sum(stream.events for stream in streams),
        )
        return streams

    async def system_key(self, name: str, version: int | None = None) -> SystemKey:
        """The system data key for purpose `name`: its current version (created on first use)
        to seal, or the `version` a record names to open it. Never shredded."""
        return await self._system.data_key(self.wrapper, name, version)

    async def rotate_system_key(self, name: str) -> SystemKey:
        """Add a version of `name` and make it current here; older versions still open."""
        return await self._system.rotate_data_key(self.wrapper, name)

    async def signer(self, name: str) -> Signer:
        """The signing key for purpose `name` (Ed25519, created on first use)."""
        return await self._system.signer(self.wrapper, name)

    async def rewrap_all(self, batch: int = 500) -> int:
        """Re-wrap every key not under the current master key, subject keys and system keys;
        events and sealed records are untouched.

        Returns how many keys were re-wrapped. Safe to run again after an interruption."""
        return await self._rewrap_subject_keys(batch) + await self._system.rewrap(
            self.wrapper, batch
        )

    async def _rewrap_subject_keys(self, batch: int) -> int:
        return await rewrap_table(
            self.pool,
            self.wrapper,
            "subject_keys",
            ("subject_id", "key_version"),
            lambda row: _wrap_context(row["subject_id"], row["key_version"]),
            batch,
        )
