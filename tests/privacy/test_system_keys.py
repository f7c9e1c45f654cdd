"""System keys and signing keys: no subject's, never shredded, wrapped by the master key."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from uuid import uuid4

import asyncpg
import pytest

from continuity.db import close_pool, create_pool
from continuity.erasure import shred_subject
from continuity.store import EventStore
from privacy.cipher import DecryptionFailed, seal, unseal
from privacy.errors import SystemKeyMissing
from privacy.master_key import Keyring, MasterKeyError, SignatureInvalid, verify_signature
from privacy.vault import KeyVault
from tests.privacy.gates import within

pytestmark = pytest.mark.anyio

AAD = b"audit-record-1"


async def test_a_system_key_seals_in_one_process_and_opens_in_another_after_an_erasure(
    pool: asyncpg.Pool, schema: str, keyring: Keyring, vault: KeyVault, store: EventStore
) -> None:
    subject = uuid4()
    await vault.key_for_writing(subject)
    key = await vault.system_key("audit")
    sealed = seal(key, b"agent 7 viewed a customer page", AAD)

    await shred_subject(store, vault, subject)

    elsewhere = KeyVault(pool, schema, keyring)
    again = await elsewhere.system_key("audit", key.version)
    assert unseal(again, sealed, AAD) == b"agent 7 viewed a customer page"
    assert (await elsewhere.system_key("audit")).version == key.version
    # One audit key, unchanged by the erasure (which adds only the journal's signing key).
    assert await pool.fetchval("SELECT count(*) FROM system_keys WHERE name = 'audit'") == 1


async def test_purposes_have_their_own_keys_and_versions_keep_opening(
    pool: asyncpg.Pool, schema: str, keyring: Keyring, vault: KeyVault
) -> None:
    audit, journal = await vault.system_key("audit"), await vault.system_key("erasure-journal")
    sealed = seal(audit, b"record", AAD)
    with pytest.raises(DecryptionFailed):
        unseal(journal, sealed, AAD)

    rotated = await vault.rotate_system_key("audit")
    assert rotated.version > audit.version
    assert (await vault.system_key("audit")).version == rotated.version
    elsewhere = KeyVault(pool, schema, keyring)
    assert (await elsewhere.system_key("audit")).version == rotated.version
    assert unseal(await elsewhere.system_key("audit", audit.version), sealed, AAD) == b"record"
    with pytest.raises(SystemKeyMissing):
        await elsewhere.system_key("audit", rotated.version + 1)


async def test_a_signature_verifies_with_the_public_key_alone(
    pool: asyncpg.Pool, schema: str, keyring: Keyring, vault: KeyVault
) -> None:
    signer = await vault.signer("erasure-certificates")
    certificate = b'{"subject_id": "...", "erased_at": "..."}'
    signature = signer.sign(certificate)

    verify_signature(signer.public_key, certificate, signature)
    verify_signature(signer.public_key_pem(), certificate, signature)
    flipped = bytearray(signature)
    flipped[5] ^= 0x01
    with pytest.raises(SignatureInvalid):
        verify_signature(signer.public_key, certificate, bytes(flipped))
    with pytest.raises(SignatureInvalid):
        verify_signature(signer.public_key, certificate.replace(b"erased", b"Erased"), signature)
    other = await vault.signer("something-else")
    assert other.key_id != signer.key_id
    with pytest.raises(SignatureInvalid):
        verify_signature(other.public_key, certificate, signature)

    elsewhere = await KeyVault(pool, schema, keyring).signer("erasure-certificates")
    assert (elsewhere.key_id, elsewhere.public_key) == (signer.key_id, signer.public_key)
    verify_signature(signer.public_key, certificate, elsewhere.sign(certificate))


@pytest.fixture
async def racing_pools(database_url: str, schema: str) -> AsyncIterator[list[asyncpg.Pool]]:
    """Two processes' pools, named so the test can see their backends wait on a lock."""
    name = f"race-{uuid4().hex[:12]}"
    pools = [
        await create_pool(database_url, schema, min_size=1, settings={"application_name": name})
        for _ in range(2)
    ]
    yield pools
    for racer in pools:
        await close_pool(racer)


async def waiting_on_a_lock(pool: asyncpg.Pool, application: str, count: int) -> None:
    while True:
        waiting = await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE application_name = $1 AND wait_event_type = 'Lock'",
            application,
        )
        if waiting >= count:
            return
        await asyncio.sleep(0.01)


async def fingerprint(vault: KeyVault, kind: str) -> bytes:
    """Bytes that only the same key gives (a fixed nonce is fine for a test's comparison)."""
    if kind == "system key":
        key = await vault.system_key("consent-proofs")
        return key.aead.encrypt(bytes(12), b"fingerprint", None)
    return (await vault.signer("consent-proofs")).public_key


@pytest.mark.parametrize("kind", ["system key", "signing key"])
async def test_processes_racing_to_create_a_key_agree_on_one(
    racing_pools: list[asyncpg.Pool], pool: asyncpg.Pool, schema: str, keyring: Keyring, kind: str
) -> None:
    """Both see no key and both insert one: a lock held by the test makes them insert together."""
    vaults = [KeyVault(racer, schema, keyring) for racer in racing_pools]
    application = await racing_pools[0].fetchval("SELECT current_setting('application_name')")
    async with pool.acquire() as blocker, blocker.transaction():
        await blocker.execute("LOCK TABLE system_keys IN SHARE MODE")  # reads pass, inserts wait
        racing = [asyncio.create_task(fingerprint(vault, kind)) for vault in vaults]
        await within(waiting_on_a_lock(pool, application, 2))
    first, second = await within(asyncio.gather(*racing))

    assert first == second
    assert await pool.fetchval("SELECT count(*) FROM system_keys") == 1


async def test_a_wrapped_system_key_never_unwraps_as_another_key(
    pool: asyncpg.Pool, schema: str, keyring: Keyring, vault: KeyVault
) -> None:
    version = (await vault.system_key("analytics")).version
    await vault.signer("analytics")
    subject = uuid4()
    await pool.execute(
        "INSERT INTO subject_keys (subject_id, key_version, kek_id, wrapped_key)"
        " SELECT $1, key_version, kek_id, wrapped_key FROM system_keys WHERE kind = 'aes-256-gcm'",
        subject,
    )
    with pytest.raises(MasterKeyError):
        await KeyVault(pool, schema, keyring).keys_for_reading([(subject, version)])

    await pool.execute(
        "UPDATE system_keys SET wrapped_key = s.wrapped_key FROM system_keys s"
        " WHERE system_keys.kind = 'aes-256-gcm' AND s.kind = 'ed25519'"
    )
    with pytest.raises(MasterKeyError):
        await KeyVault(pool, schema, keyring).system_key("analytics")

    await pool.execute(
        "UPDATE system_keys SET public_key = $1 WHERE kind = 'ed25519' AND name = 'analytics'",
        (await vault.signer("another")).public_key,
    )
    with pytest.raises(MasterKeyError):
        await KeyVault(pool, schema, keyring).signer("analytics")
