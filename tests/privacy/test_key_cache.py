"""The key cache never holds, and the vault never hands out for writing, an erased subject's key:
not even when the key was read from the database before the erasure committed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from uuid import UUID, uuid4

import pytest

from continuity.db import close_pool
from continuity.erasure import shred_subject
from continuity.store import EventStore
from privacy.errors import SubjectErased
from privacy.master_key import Keyring
from privacy.vault import KeyVault
from tests.privacy.gates import Gate, gated_pool, within

pytestmark = pytest.mark.anyio


@dataclass
class OtherProcess:
    """A second process's vault, on its own pool, with a gate on its connections."""

    vault: KeyVault
    gate: Gate


@pytest.fixture
async def other(database_url: str, schema: str, keyring: Keyring) -> AsyncIterator[OtherProcess]:
    gate = Gate()
    pool = await gated_pool(database_url, schema, gate)
    vault = KeyVault(pool, schema, keyring)
    await vault.start()
    try:
        yield OtherProcess(vault, gate)
    finally:
        await within(vault.close())
        await close_pool(pool)


@pytest.mark.parametrize("use", ["writing", "reading"])
async def test_a_key_read_before_the_erasure_committed_is_not_cached_after_the_eviction(
    other: OtherProcess, vault: KeyVault, store: EventStore, use: str
) -> None:
    subject = uuid4()
    key = await vault.key_for_writing(subject)
    wanted = [(subject, key.version)]

    other.gate.hold_next_key_read = True
    if use == "writing":
        in_flight: asyncio.Task[object] = asyncio.create_task(other.vault.key_for_writing(subject))
    else:
        in_flight = asyncio.create_task(other.vault.keys_for_reading(wanted))
    await within(other.gate.key_read_held.wait())  # the database answered: the key exists

    await shred_subject(store, vault, subject)  # committed by "this" process
    await within(other.gate.notified(str(subject)))  # the other process has evicted
    other.gate.let_key_read_go.set()  # only now does its read come back

    if use == "writing":
        with pytest.raises(SubjectErased):
            await within(in_flight)
    else:
        assert await within(in_flight) == {}
    assert await other.vault.keys_for_reading(wanted) == {}
    with pytest.raises(SubjectErased):
        await other.vault.key_for_writing(subject)


@pytest.fixture
async def deaf(database_url: str, schema: str, keyring: Keyring) -> AsyncIterator[OtherProcess]:
    """A vault that never listens, so it hears of erasures only from the database."""
    gate = Gate()
    pool = await gated_pool(database_url, schema, gate)
    try:
        yield OtherProcess(KeyVault(pool, schema, keyring, erased_memory=2), gate)
    finally:
        await close_pool(pool)


async def erased(vault: KeyVault, store: EventStore) -> UUID:
    subject = uuid4()
    await vault.key_for_writing(subject)
    await shred_subject(store, vault, subject)
    return subject


async def test_a_tombstone_met_on_a_fetch_is_remembered(
    deaf: OtherProcess, vault: KeyVault, store: EventStore
) -> None:
    met_on_write, met_on_read = await erased(vault, store), await erased(vault, store)
    with pytest.raises(SubjectErased):
        await deaf.vault.key_for_writing(met_on_write)
    assert await deaf.vault.erased_among([met_on_read]) == {met_on_read}

    reads = deaf.gate.key_reads
    for subject in (met_on_write, met_on_read):
        with pytest.raises(SubjectErased):
            await deaf.vault.key_for_writing(subject)
    assert deaf.gate.key_reads == reads, "refused from memory, without asking the database"


async def test_an_erasure_forgotten_for_room_is_still_refused(
    deaf: OtherProcess, vault: KeyVault, store: EventStore
) -> None:
    oldest, *recent = [await erased(vault, store) for _ in range(3)]
    for subject in (oldest, *recent):
        assert await deaf.vault.erased_among([subject]) == {subject}

    reads = deaf.gate.key_reads
    for subject in recent:
        with pytest.raises(SubjectErased):
            await deaf.vault.key_for_writing(subject)
    assert deaf.gate.key_reads == reads
    with pytest.raises(SubjectErased):
        await deaf.vault.key_for_writing(oldest)
    assert deaf.gate.key_reads == reads + 1, "the oldest was forgotten: the database refuses it"


async def test_two_processes_writing_a_new_subject_first_get_one_and_the_same_key(
    other: OtherProcess, vault: KeyVault
) -> None:
    for _ in range(5):
        subject = uuid4()
        mine, theirs = await asyncio.gather(
            vault.key_for_writing(subject), other.vault.key_for_writing(subject)
        )
        assert (mine.version, mine.mac_key) == (theirs.version, theirs.mac_key)
        assert mine.version == 1
        stored = await vault.pool.fetchval(
            "SELECT count(*) FROM subject_keys WHERE subject_id = $1", subject
        )
        assert stored == 1
