"""Crypto-shredding a data subject: destroy their keys, drop their projection rows."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from uuid import UUID

import msgspec

from continuity.catalog import forget
from continuity.devices import ACK_TIMEOUT, forget_devices
from continuity.erasure_journal import journal_erasures, write_after_commit
from continuity.handoff import forget_codes
from continuity.identifiers import suppress
from continuity.processes import acknowledged, publish
from continuity.store import EventStore
from privacy.journal import JOURNAL_KEY, JournalRef
from privacy.vault import ERASED, KeyVault


class ShredCertificate(msgspec.Struct, frozen=True):
    """What was rendered unreadable, and when. Holds no personal data."""

    subject_id: UUID
    erased_at: datetime
    key_versions_destroyed: list[int]
    events_unreadable: int
    projection_rows_deleted: int
    already_erased: bool
    linked_subjects: list[UUID] = []
    """Guests linked to the subject on sign-in, erased with them."""
    devices_removed: int = 0
    processes_acknowledged: list[UUID] = []
    """The API processes that dropped the keys from their caches before this was answered."""
    identifiers_suppressed: int = 0
    """Email addresses and phone numbers (keyed hashes) now refused until a compliance officer
    lifts them."""
    processes_missing: list[UUID] = []
    """Live processes that did not acknowledge in time (they stop caching keys once they
    miss heartbeats, and start afresh when back)."""
    journal: list[JournalRef] = []
    """The erasure journal's entry for the subject and each linked guest (sequence and hash),
    written in the erasure's transaction: what `continuity erasures reapply` destroys again
    after a restore from a backup."""


async def shred_subject(
    store: EventStore, vault: KeyVault, subject_id: UUID, *, journal_file: Path | None = None
) -> ShredCertificate:
    """Destroy the keys and projection rows of the subject and of the guests linked to them,
    and their devices and handoff codes, in one transaction. Their events stay in the log as
    ciphertext that no key can open; reads yield erased placeholders. Returns once every live
    process has dropped the keys from its cache and refuses the removed devices' tokens (or
    ACK_TIMEOUT passed: the certificate names who acknowledged and who did not). The journal
    entries are appended to `journal_file` after the commit, if given."""
    signer = await vault.signer(JOURNAL_KEY)
    async with store.pool.acquire() as conn, conn.transaction():
        linked: list[UUID] = [
            row["subject_id"]
            for row in await conn.fetch(
                "SELECT subject_id FROM guests WHERE linked_to = $1 ORDER BY subject_id",
                subject_id,
            )
        ]
        receipt = await vault.shred(conn, subject_id)
        rows = await forget(conn, subject_id)
        events = receipt.events_unreadable
        for guest in linked:
            events += (await vault.shred(conn, guest)).events_unreadable
            rows += await forget(conn, guest)
        subjects = [subject_id, *linked]
        sent = [await publish(conn, store.schema, ERASED, subject) for subject in subjects]
        removed = await forget_devices(conn, store.schema, subjects)
        await forget_codes(conn, subjects)
        suppressed = await suppress(conn, subjects)
        journal = await journal_erasures(conn, signer, subjects)
    if journal_file is not None:
        await write_after_commit(store.pool, journal_file)
    acks = await acknowledged(store.pool, max(sent + removed), ACK_TIMEOUT)
    return ShredCertificate(
        subject_id=subject_id,
        erased_at=receipt.erased_at,
        key_versions_destroyed=receipt.key_versions,
        events_unreadable=events,
        projection_rows_deleted=rows,
        already_erased=receipt.already_erased,
        linked_subjects=linked,
        devices_removed=len(removed),
        identifiers_suppressed=suppressed,
        processes_acknowledged=acks.acknowledged,
        processes_missing=acks.missing,
        journal=journal,
    )
