"""Crypto-shredding a data subject: destroy their keys, drop their projection rows."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec

from continuity.catalog import forget
from continuity.store import EventStore
from privacy.vault import KeyVault


class ShredCertificate(msgspec.Struct, frozen=True):
    """What was rendered unreadable, and when. Holds no personal data."""

    subject_id: UUID
    erased_at: datetime
    key_versions_destroyed: list[int]
    events_unreadable: int
    projection_rows_deleted: int
    already_erased: bool


async def shred_subject(store: EventStore, vault: KeyVault, subject_id: UUID) -> ShredCertificate:
    """Destroy the subject's data keys and projection rows in one transaction. Their events stay
    in the log as ciphertext that no key can open; reads yield erased placeholders."""
    async with store.pool.acquire() as conn, conn.transaction():
        receipt = await vault.shred(conn, subject_id)
        rows = await forget(conn, subject_id)
    return ShredCertificate(
        subject_id=subject_id,
        erased_at=receipt.erased_at,
        key_versions_destroyed=receipt.key_versions,
        events_unreadable=receipt.events_unreadable,
        projection_rows_deleted=rows,
        already_erased=receipt.already_erased,
    )
