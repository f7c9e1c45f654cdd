"""The vault's LISTEN connection: when it is lost, nothing is cached until it is back, and
nothing cached before the loss survives it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from uuid import uuid4

import asyncpg
import pytest

from continuity.db import close_pool
from continuity.erasure import shred_subject
from continuity.store import EventStore
from privacy.errors import SubjectErased
from privacy.master_key import Keyring
from privacy.vault import KeyVault
from tests.privacy.freezing_proxy import FreezingProxy, upstream_of
from tests.privacy.gates import Gate, gated_pool, within

pytestmark = pytest.mark.anyio


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
async def other_pool(database_url: str, schema: str, gate: Gate) -> AsyncIterator[asyncpg.Pool]:
    pool = await gated_pool(database_url, schema, gate)
    yield pool
    await close_pool(pool)


@pytest.fixture
async def other(other_pool: asyncpg.Pool, schema: str, keyring: Keyring) -> AsyncIterator[KeyVault]:
    """Another process's vault, reconnecting fast so the tests do not wait on back-off, and
    probing so rarely that only the termination callback can notice a lost connection."""
    vault = KeyVault(other_pool, schema, keyring, retry_delay=0.01, liveness_interval=3600)
    await vault.start()
    yield vault
    await within(vault.close())


async def kill_listener(pool: asyncpg.Pool, gate: Gate) -> int:
    pid = gate.listener_pids[-1]
    assert await pool.fetchval("SELECT pg_terminate_backend($1)", pid)
    return pid


async def test_a_terminated_listener_comes_back_and_the_cache_starts_empty(
    other: KeyVault, gate: Gate, vault: KeyVault, store: EventStore, pool: asyncpg.Pool
) -> None:
    erased_in_the_gap, kept, erased_later = uuid4(), uuid4(), uuid4()
    wanted = {}
    for subject in (erased_in_the_gap, kept, erased_later):
        key = await vault.key_for_writing(subject)
        wanted[subject] = [(subject, key.version)]
        assert await other.keys_for_reading(wanted[subject])
    reads = gate.key_reads
    assert await other.keys_for_reading(wanted[kept])
    assert gate.key_reads == reads, "a listening vault serves a known key from its cache"
    assert other.listening

    gate.refuse_listening = True  # LISTEN fails for a while
    old_pid = await kill_listener(pool, gate)
    await within(gate.blocked_at_least(1))
    assert not other.listening
    await shred_subject(store, vault, erased_in_the_gap)  # nobody tells `other`
    reads = gate.key_reads
    assert await other.keys_for_reading(wanted[kept])
    assert await other.keys_for_reading(wanted[kept])
    assert gate.key_reads == reads + 2, "nothing is cached while nobody listens"

    gate.refuse_listening = False
    await within(gate.listening_on_a_new_backend(than=old_pid))
    assert other.listening
    assert await other.keys_for_reading(wanted[erased_in_the_gap]) == {}
    with pytest.raises(SubjectErased):
        await other.key_for_writing(erased_in_the_gap)
    reads = gate.key_reads
    assert await other.keys_for_reading(wanted[kept])
    assert gate.key_reads == reads + 1, "the cache was cleared when listening resumed"

    await shred_subject(store, vault, erased_later)  # after the reconnect
    await within(gate.notified(str(erased_later)))
    assert await other.keys_for_reading(wanted[erased_later]) == {}
    with pytest.raises(SubjectErased):
        await other.key_for_writing(erased_later)


@pytest.mark.parametrize("started", ["before the loss", "during the gap"])
async def test_a_key_read_across_a_lost_listener_is_not_cached(
    other: KeyVault,
    gate: Gate,
    vault: KeyVault,
    store: EventStore,
    pool: asyncpg.Pool,
    started: str,
) -> None:
    """The read's answer predates an erasure that nobody hears about, and it comes back only
    after listening has resumed: it must not land in the cache."""
    subject = uuid4()
    key = await vault.key_for_writing(subject)
    wanted = [(subject, key.version)]

    gate.hold_next_key_read = True
    if started == "before the loss":
        in_flight = asyncio.create_task(other.keys_for_reading(wanted))
        await within(gate.key_read_held.wait())
    gate.refuse_listening = True
    old_pid = await kill_listener(pool, gate)
    await within(gate.blocked_at_least(1))
    if started == "during the gap":
        in_flight = asyncio.create_task(other.keys_for_reading(wanted))
        await within(gate.key_read_held.wait())
    await shred_subject(store, vault, subject)
    gate.refuse_listening = False
    await within(gate.listening_on_a_new_backend(than=old_pid))

    gate.let_key_read_go.set()
    await within(in_flight)
    assert await other.keys_for_reading(wanted) == {}
    with pytest.raises(SubjectErased):
        await other.key_for_writing(subject)


@pytest.mark.parametrize("database", ["refusing", "stalling"])
async def test_close_during_the_reconnect_loop_returns_and_leaves_nothing_behind(
    other_pool: asyncpg.Pool,
    schema: str,
    keyring: Keyring,
    gate: Gate,
    pool: asyncpg.Pool,
    database: str,
) -> None:
    vault = KeyVault(other_pool, schema, keyring, retry_delay=0.01)
    await vault.start()
    gate.refuse_listening = database == "refusing"
    gate.stall_checkouts = database == "stalling"
    await kill_listener(pool, gate)
    await within(gate.blocked_at_least(2 if database == "refusing" else 1))

    await within(vault.close())

    assert not vault.listening
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("continuity-keys")]
    assert other_pool.get_size() == other_pool.get_idle_size(), "no connection left checked out"


async def test_a_listener_that_goes_silent_is_replaced(
    database_url: str,
    schema: str,
    keyring: Keyring,
    gate: Gate,
    vault: KeyVault,
    store: EventStore,
) -> None:
    """No FIN, no RST: only the liveness probe can tell that this connection is gone."""
    subject = uuid4()
    key = await vault.key_for_writing(subject)
    wanted = [(subject, key.version)]
    async with FreezingProxy(upstream_of(database_url)) as proxy:
        other_pool = await gated_pool(
            database_url, schema, gate, host="127.0.0.1", port=proxy.port, ssl=False
        )
        other = KeyVault(
            other_pool,
            schema,
            keyring,
            retry_delay=0.01,
            liveness_interval=0.05,
            probe_timeout=0.5,
        )
        await other.start()
        try:
            assert await other.keys_for_reading(wanted)
            silent = gate.listener_pids[-1]
            proxy.freeze(silent)
            await within(gate.listening_on_a_new_backend(than=silent))

            await shred_subject(store, vault, subject)
            await within(gate.notified(str(subject)))
            assert await other.keys_for_reading(wanted) == {}
        finally:
            await within(other.close())
            await close_pool(other_pool)


async def test_close_right_after_start_gives_the_listener_back(
    pool: asyncpg.Pool, schema: str, keyring: Keyring
) -> None:
    """A command that opens, does nothing and closes: the watcher never got to run."""
    vault = KeyVault(pool, schema, keyring)
    await vault.start()
    await vault.close()  # nothing between: the watcher task has not had a turn yet
    assert not vault.listening
    assert pool.get_size() == pool.get_idle_size(), "no connection left checked out"
