"""Keys that belong to no data subject, so no erasure ever destroys them.

Records that must outlive a subject's erasure and hold no personal data (erasure certificates
and the erasure journal, consent proofs, the access audit, non-personal analytics) cannot be
sealed with that subject's key. They use a system data key (AES-256-GCM), and certificates are
signed with a signing key (Ed25519). Both kinds live in `system_keys`, one row per kind, name
(the purpose) and version, stored only wrapped by the master key (KEK) exactly like subject
keys; shredding never touches the table, and `KeyVault.rewrap_all` re-wraps it too.

The wrap's associated data starts "continuity-system-key-v1" and binds kind, name, version and
(for a signing key) the clear public key. So a wrapped system key never unwraps as a subject
key ("continuity-dek-v1" ‖ subject ‖ version), nor as another kind, purpose or version, and a
public key swapped in the table makes the private key refuse to unwrap.

A purpose's first key is created on first use. Processes racing to create it agree on one: the
primary key lets one insert win, and every racer reads back the winner's. `rotate` adds a
version; the highest is current for new records, and older versions still open what they
sealed. Unwrapped keys are cached for the life of the process, since nothing destroys them; a
process that cached the current version before another rotated keeps sealing with it until it
restarts, which is harmless.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import TypeVar

import asyncpg

from privacy.cipher import SystemKey
from privacy.errors import SystemKeyMissing
from privacy.master_key import KEY_BYTES, Ed25519Signer, KeyWrapper
from privacy.rewrap import rewrap_table

DATA_KEY = "aes-256-gcm"
SIGNING_KEY = "ed25519"
FIRST_VERSION = 1

K = TypeVar("K", SystemKey, Ed25519Signer)


def wrap_context(kind: str, name: str, version: int, public_key: bytes | None) -> bytes:
    return b"\x00".join(
        (
            b"continuity-system-key-v1",
            kind.encode("ascii"),
            name.encode("utf-8"),
            version.to_bytes(4, "big") + (public_key or b""),
        )
    )


def _new_data_key() -> tuple[bytes, bytes | None]:
    return secrets.token_bytes(KEY_BYTES), None


def _new_signing_key() -> tuple[bytes, bytes | None]:
    signer = Ed25519Signer.generate()
    return signer.private_bytes(), signer.public_key


def _data_key(name: str, version: int, secret: bytes) -> SystemKey:
    return SystemKey.from_bytes(name, version, secret)


def _signer(_name: str, _version: int, secret: bytes) -> Ed25519Signer:
    return Ed25519Signer.from_private_bytes(secret)


class SystemKeys:
    """The system keys of one process: fetched or created, unwrapped once, cached."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._data_keys: dict[tuple[str, int], SystemKey] = {}
        self._signers: dict[tuple[str, int], Ed25519Signer] = {}
        self._current: dict[tuple[str, str], int] = {}

    async def data_key(self, wrapper: KeyWrapper, name: str, version: int | None) -> SystemKey:
        return await self._obtain(wrapper, DATA_KEY, name, version, self._data_keys, _data_key)

    async def signer(self, wrapper: KeyWrapper, name: str) -> Ed25519Signer:
        return await self._obtain(wrapper, SIGNING_KEY, name, None, self._signers, _signer)

    async def rotate_data_key(self, wrapper: KeyWrapper, name: str) -> SystemKey:
        current = await self.data_key(wrapper, name, None)
        await self._insert(wrapper, DATA_KEY, name, current.version + 1)
        self._current.pop((DATA_KEY, name), None)
        return await self.data_key(wrapper, name, None)

    async def _obtain(
        self,
        wrapper: KeyWrapper,
        kind: str,
        name: str,
        version: int | None,
        cache: dict[tuple[str, int], K],
        make: Callable[[str, int, bytes], K],
    ) -> K:
        wanted = version if version is not None else self._current.get((kind, name))
        cached = None if wanted is None else cache.get((name, wanted))
        if cached is not None:
            return cached
        row = await self._select(kind, name, version)
        if row is None:
            if version is not None:
                raise SystemKeyMissing(kind, name, version)
            await self._insert(wrapper, kind, name, FIRST_VERSION)
            row = await self._select(kind, name, None)
            assert row is not None, "system keys are never deleted"
        found = row["key_version"]
        context = wrap_context(kind, name, found, row["public_key"])
        key = make(name, found, wrapper.unwrap(row["kek_id"], row["wrapped_key"], context))
        cache[(name, found)] = key
        if version is None:
            self._current[(kind, name)] = found
        return key

    async def _select(self, kind: str, name: str, version: int | None) -> asyncpg.Record | None:
        return await self.pool.fetchrow(
            "SELECT key_version, kek_id, wrapped_key, public_key FROM system_keys"
            " WHERE kind = $1 AND name = $2 AND ($3::int IS NULL OR key_version = $3)"
            " ORDER BY key_version DESC LIMIT 1",
            kind,
            name,
            version,
        )

    async def _insert(self, wrapper: KeyWrapper, kind: str, name: str, version: int) -> None:
        """Create `version` unless some process already has: then theirs stands."""
        secret, public_key = _new_signing_key() if kind == SIGNING_KEY else _new_data_key()
        kek_id, wrapped = wrapper.wrap(secret, wrap_context(kind, name, version, public_key))
        await self.pool.execute(
            "INSERT INTO system_keys (kind, name, key_version, kek_id, wrapped_key, public_key)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            kind,
            name,
            version,
            kek_id,
            wrapped,
            public_key,
        )

    async def rewrap(self, wrapper: KeyWrapper, batch: int) -> int:
        """Re-wrap every system key not under the current master key; returns how many."""
        return await rewrap_table(
            self.pool,
            wrapper,
            "system_keys",
            ("kind", "name", "key_version"),
            lambda row: wrap_context(
                row["kind"], row["name"], row["key_version"], row["public_key"]
            ),
            batch,
        )
