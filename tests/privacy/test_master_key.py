"""The master key wraps data keys and system keys; rotating it re-wraps them all without
touching any event or sealed record."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from uuid import uuid4

import asyncpg
import pytest

from aggregates.cart import Cart
from aggregates.metadata import EventMeta
from continuity.mapper import EventMapper
from continuity.store import EventStore
from privacy.cipher import seal, unseal
from privacy.master_key import (
    Keyring,
    MasterKey,
    MasterKeyError,
    load_or_create_key_file,
    verify_signature,
)
from privacy.vault import KeyVault


def test_the_key_file_is_created_private_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "data" / "master.key"
    first = load_or_create_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key_file(path).current_id == first.current_id
    os.chmod(path, 0o644)
    with pytest.raises(MasterKeyError, match="chmod 600"):
        load_or_create_key_file(path)


@pytest.mark.parametrize("text", ["not base64!", "c2hvcnQ=", ""])
def test_malformed_master_keys_are_refused(text: str) -> None:
    with pytest.raises(MasterKeyError):
        Keyring.from_text(text)


@pytest.mark.anyio
async def test_rotation_rewraps_data_keys_and_events_stay_readable(
    pool: asyncpg.Pool, schema: str, store: EventStore
) -> None:
    old = MasterKey.generate()
    vault = KeyVault(pool, schema, Keyring([old]))
    mapper = EventMapper(vault)
    subject = uuid4()
    cart = Cart(subject_id=subject)
    events = list(cart.collect_events())
    rows = await mapper.to_rows(subject, EventMeta("web"), events, [uuid4()])  # type: ignore[arg-type]
    await store.append(rows, {cart.id: 0})
    before = await store.select_events(cart.id)
    sealed = seal(await vault.system_key("audit"), b"an audit record", b"aad")
    signer = await vault.signer("erasure-certificates")
    signature = signer.sign(b"a certificate")

    new = MasterKey.generate()
    vault.wrapper = Keyring([new, old])
    assert await vault.rewrap_all() == 3, "the subject's key, the system key, the signing key"
    assert await vault.rewrap_all() == 0
    assert await store.select_events(cart.id) == before
    assert await pool.fetchval("SELECT count(*) FROM system_keys WHERE kek_id <> $1", new.id) == 0

    only_new = EventMapper(KeyVault(pool, schema, Keyring([new])))
    [envelope] = await only_new.to_envelopes(before)
    assert isinstance(envelope.event, Cart.Opened)
    assert envelope.event.subject_id == subject
    with pytest.raises(MasterKeyError):
        await EventMapper(KeyVault(pool, schema, Keyring([old]))).to_envelopes(before)

    under_new = KeyVault(pool, schema, Keyring([new]))
    assert unseal(await under_new.system_key("audit"), sealed, b"aad") == b"an audit record"
    rotated = await under_new.signer("erasure-certificates")
    assert rotated.key_id == signer.key_id
    verify_signature(rotated.public_key, b"a certificate", signature)
    verify_signature(signer.public_key, b"a certificate", rotated.sign(b"a certificate"))
    under_old = KeyVault(pool, schema, Keyring([old]))
    with pytest.raises(MasterKeyError):
        await under_old.system_key("audit")
    with pytest.raises(MasterKeyError):
        await under_old.signer("erasure-certificates")
