"""Crypto-shredding a data subject: destroy their keys, then drop their projection rows.

The keys go first, in one transaction whose cost does not depend on the history's length, and
every live process acknowledges it before anything else: that is the moment the data becomes
unreadable everywhere. Counting the events and deleting the projection rows (ciphertext that
nothing can open any more) come after, outside that transaction."""

from __future__ import annotations

from datetime import UTC, datetime
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
from privacy.vault import ERASED, KeyVault, UnreadableStream


class ShredCertificate(msgspec.Struct, frozen=True):
    """What was rendered unreadable, and when. Holds no personal data."""

    subject_id: UUID
    erased_at: datetime
    """When the keys were destroyed (the erasure's commit)."""
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
    streams: list[UnreadableStream] = []
    """Each stream of the subject and of their linked guests, with its events no key opens."""
    acknowledged_at: datetime | None = None
    """When every live process had dropped the keys (or the wait ended): from then on no copy
    of the data is readable anywhere."""
    purged_at: datetime | None = None
    """When the projection rows (ciphertext no key opens any more) were deleted."""
    snapshots_deleted: int = 0
    """Aggregate snapshots of the subjects (sealed with the destroyed keys) deleted."""
    journal: list[JournalRef] = []
    """The erasure journal's entry for the subject and each linked guest (sequence and hash),
    written in the erasure's transaction: what `continuity erasures reapply` destroys again
    after a restore from a backup."""


class Shredded(msgspec.Struct, frozen=True):
    """The first half of an erasure: keys destroyed and every live process told; its cost does
    not grow with the subject's history."""

    subject_id: UUID
    erased_at: datetime
    key_versions_destroyed: list[int]
    already_erased: bool
    linked_subjects: list[UUID]
    devices_removed: int
    identifiers_suppressed: int
    processes_acknowledged: list[UUID]
    processes_missing: list[UUID]
    acknowledged_at: datetime
    journal: list[JournalRef]


async def shred_keys(
    store: EventStore, vault: KeyVault, subject_id: UUID, *, journal_file: Path | None = None
) -> Shredded:
    """Destroy the keys of the subject and of the guests linked to them, delete their devices
    and handoff codes and suppress their identifiers, in one transaction; then wait until
    every live process has dropped the keys from its cache and refuses the removed devices'
    tokens (or ACK_TIMEOUT passed: the answer names who acknowledged and who did not). From
    then on the data is unreadable everywhere; nothing here reads or writes a row per event.
    The erasure journal's entries are written in the transaction, and appended to
    `journal_file` after the commit, if given."""
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
        for guest in linked:
            await vault.shred(conn, guest)
        subjects = [subject_id, *linked]
        sent = [await publish(conn, store.schema, ERASED, subject) for subject in subjects]
        removed = await forget_devices(conn, store.schema, subjects)
        await forget_codes(conn, subjects)
        suppressed = await suppress(conn, subjects)
        journal = await journal_erasures(conn, signer, subjects)
    if journal_file is not None:
        await write_after_commit(store.pool, journal_file)
    acks = await acknowledged(store.pool, max(sent + removed), ACK_TIMEOUT)
    return Shredded(
        subject_id=subject_id,
        erased_at=receipt.erased_at,
        key_versions_destroyed=receipt.key_versions,
        already_erased=receipt.already_erased,
        linked_subjects=linked,
        devices_removed=len(removed),
        identifiers_suppressed=suppressed,
        processes_acknowledged=acks.acknowledged,
        processes_missing=acks.missing,
        acknowledged_at=datetime.now(UTC),
        journal=journal,
    )


async def purge(store: EventStore, vault: KeyVault, shredded: Shredded) -> ShredCertificate:
    """The second half: count what was made unreadable and delete the projection rows and
    snapshots, which no key opens any more; each subject in its own transaction. Safe to
    repeat."""
    streams: list[UnreadableStream] = []
    rows = snapshots = 0
    for subject in (shredded.subject_id, *shredded.linked_subjects):
        async with store.pool.acquire() as conn, conn.transaction():
            streams += await vault.count_unreadable(conn, subject)
            rows += await forget(conn, subject)
            status = await conn.execute("DELETE FROM snapshots WHERE subject_id = $1", subject)
            snapshots += int(status.split()[-1])
    return ShredCertificate(
        subject_id=shredded.subject_id,
        erased_at=shredded.erased_at,
        key_versions_destroyed=shredded.key_versions_destroyed,
        events_unreadable=sum(stream.events for stream in streams),
        projection_rows_deleted=rows,
        already_erased=shredded.already_erased,
        linked_subjects=shredded.linked_subjects,
        devices_removed=shredded.devices_removed,
        processes_acknowledged=shredded.processes_acknowledged,
        identifiers_suppressed=shredded.identifiers_suppressed,
        processes_missing=shredded.processes_missing,
        streams=streams,
        acknowledged_at=shredded.acknowledged_at,
        purged_at=datetime.now(UTC),
        snapshots_deleted=snapshots,
        journal=shredded.journal,
    )


async def shred_subject(
    store: EventStore, vault: KeyVault, subject_id: UUID, *, journal_file: Path | None = None
) -> ShredCertificate:
    """Crypto-shred the subject and the guests linked to them: `shred_keys`, then `purge`.
    Their events stay in the log as ciphertext that no key can open; reads yield erased
    placeholders."""
    shredded = await shred_keys(store, vault, subject_id, journal_file=journal_file)
    return await purge(store, vault, shredded)
