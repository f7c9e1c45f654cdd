"""Retention by age, by crypto-shredding: the log keeps every row, and what is older than a
policy's age becomes unreadable because the keys that sealed it are destroyed.

Two policies (`continuity.settings.RetentionPolicy`):

- `conversations`: a conversation's turns are sealed with the subject's `CONVERSATION` keys,
  one per period (`continuity.mapper.KEY_CLASSES`, `privacy.vault`). A key whose period ended
  more than the policy's age ago is destroyed: its turns read as placeholders (`expired`) that
  keep their kind, channel and time, while the conversation itself (opened, handed off,
  resolved: sealed with the subject's general keys) still loads, and its recent turns read.
  Data is therefore kept at least the policy's age, and at most that plus one key period.
  Projection rows sealed with a destroyed key (the timeline's) are deleted, and the subject's
  session view is folded afresh from the log, so no view keeps an expired turn's text.
- `guests`: a guest never linked to a customer, with no event, device use or start within
  the policy's age, is crypto-shredded whole (`continuity.erasure.shred_subject`).

Carts, applications and the rest are sealed with general keys, which no policy expires: their
aggregates are replayed from their first event, so expiring a period of them would break them.

Every destroyed key leaves every API process's cache before a run reports (an `EXPIRED`
broadcast each live process applies and acknowledges). A run is recorded in `retention_runs`
(counts only), runs one at a time (an advisory lock), and is idempotent: what it destroyed is
gone, so the next run finds nothing more until more data ages past a policy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol
from uuid import UUID, uuid4

import msgspec

from continuity.catalog import forget_sealed, sealed_tables
from continuity.db import Conn
from continuity.devices import ACK_TIMEOUT
from continuity.erasure import shred_subject
from continuity.processes import acknowledged, publish
from continuity.settings import RetentionPolicy
from continuity.store import EventStore
from privacy.vault import CONVERSATION, EXPIRED, GENERAL, KeyVault

BATCH = 100
"""Subjects whose keys one transaction destroys."""
_LOCK = 0x72657465  # "rete": one retention run at a time per schema
_NOT_HELD = (
    "NOT EXISTS (SELECT FROM legal_holds h WHERE h.subject_id = {subject} AND h.lifted_at IS NULL)"
)
"""A legal hold suspends retention as it blocks erasure: nothing of a held subject expires."""

Progress = Callable[[str, int, int], None]
"""Called with a policy's name, how many subjects it has handled and how many it will."""


class Refolding(Protocol):
    """A subject view (`continuity.subject_views.SealedViews`) folded afresh from the log."""

    async def refold(self, conn: Conn, subject_id: UUID, key_version: int | None) -> bool: ...


class PolicyOutcome(msgspec.Struct, frozen=True):
    """What one policy made unreadable in a run. No personal data: counts."""

    policy: str
    max_age_days: float
    subjects: int
    keys_destroyed: int
    events_unreadable: int
    projection_rows_deleted: int


class RetentionReport(msgspec.Struct, frozen=True):
    run_id: UUID
    started_at: datetime
    finished_at: datetime
    policies: list[PolicyOutcome]
    processes_acknowledged: list[UUID] = []
    """The API processes that dropped the destroyed keys from their caches."""
    processes_missing: list[UUID] = []


class RetentionBusy(Exception):
    """Another retention run is under way."""


async def run_retention(
    store: EventStore,
    vault: KeyVault,
    policies: Sequence[RetentionPolicy],
    *,
    views: Sequence[Refolding] = (),
    now: datetime | None = None,
    progress: Progress | None = None,
    journal_file: Path | None = None,
) -> RetentionReport:
    """Apply `policies` as of `now` (the vault's clock by default); `views` are the subject
    views folded afresh for subjects whose transcripts expired. RetentionBusy if another run
    holds the lock."""
    now = now or vault.clock()
    started = datetime.now(UTC)
    run_id = uuid4()
    async with store.pool.acquire() as lock:
        if not await lock.fetchval(
            "SELECT pg_try_advisory_lock($1, hashtext(current_schema()))", _LOCK
        ):
            raise RetentionBusy("another retention run is under way")
        try:
            outcomes: list[PolicyOutcome] = []
            seqs: list[int] = []
            acks_seen: list[UUID] = []
            missing: list[UUID] = []
            for policy in policies:
                if policy.name == "conversations":
                    outcome, sent = await _expire_transcripts(
                        store, vault, policy, now - policy.max_age, run_id, views, progress
                    )
                    seqs += sent
                else:
                    outcome, acked, lost = await _shred_idle_guests(
                        store, vault, policy, now - policy.max_age, progress, journal_file
                    )
                    acks_seen += acked
                    missing += lost
                outcomes.append(outcome)
                await store.pool.execute(
                    "INSERT INTO retention_runs (run_id, policy, max_age, started_at, subjects,"
                    " keys_destroyed, events_unreadable, projection_rows_deleted)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    run_id,
                    policy.name,
                    policy.max_age,
                    started,
                    outcome.subjects,
                    outcome.keys_destroyed,
                    outcome.events_unreadable,
                    outcome.projection_rows_deleted,
                )
            if seqs:
                acks = await acknowledged(store.pool, max(seqs), ACK_TIMEOUT)
                acks_seen += acks.acknowledged
                missing += acks.missing
        finally:
            await lock.execute("SELECT pg_advisory_unlock($1, hashtext(current_schema()))", _LOCK)
    return RetentionReport(
        run_id,
        started,
        datetime.now(UTC),
        outcomes,
        sorted(set(acks_seen) - set(missing)),
        sorted(set(missing)),
    )


async def _expire_transcripts(
    store: EventStore,
    vault: KeyVault,
    policy: RetentionPolicy,
    cutoff: datetime,
    run_id: UUID,
    views: Sequence[Refolding],
    progress: Progress | None,
) -> tuple[PolicyOutcome, list[int]]:
    """Destroy the conversation keys whose period ended before `cutoff`."""
    due = [
        (row["subject_id"], list(row["versions"]))
        for row in await store.pool.fetch(
            "SELECT subject_id, array_agg(key_version ORDER BY key_version) AS versions"
            " FROM subject_keys k WHERE key_class = $1 AND not_after <= $2"
            f" AND {_NOT_HELD.format(subject='k.subject_id')}"
            " GROUP BY subject_id ORDER BY subject_id",
            CONVERSATION,
            cutoff,
        )
    ]
    subjects = keys = events = rows = 0
    sent: list[int] = []
    if progress is not None:
        progress(policy.name, 0, len(due))
    for start in range(0, len(due), BATCH):
        async with store.pool.acquire() as conn, conn.transaction():
            tables = await sealed_tables(conn)
            for subject_id, versions in due[start : start + BATCH]:
                receipt = await vault.expire(conn, subject_id, versions, run_id)
                if not receipt.key_versions:
                    continue  # erased, or expired by a run that raced this one's listing
                subjects += 1
                keys += len(receipt.key_versions)
                events += receipt.events_unreadable
                rows += await forget_sealed(conn, tables, subject_id, receipt.key_versions)
                general = (await vault.newest_versions([subject_id], GENERAL, conn)).get(subject_id)
                for view in views:
                    await view.refold(conn, subject_id, general)
                sent.append(await publish(conn, store.schema, EXPIRED, subject_id))
        if progress is not None:
            progress(policy.name, min(start + BATCH, len(due)), len(due))
    return PolicyOutcome(policy.name, _days(policy.max_age), subjects, keys, events, rows), sent


async def _shred_idle_guests(
    store: EventStore,
    vault: KeyVault,
    policy: RetentionPolicy,
    cutoff: datetime,
    progress: Progress | None,
    journal_file: Path | None,
) -> tuple[PolicyOutcome, list[UUID], list[UUID]]:
    """Crypto-shred every guest never linked and idle since before `cutoff`: no event, no
    device seen and no start after it."""
    idle = [
        row[0]
        for row in await store.pool.fetch(
            "SELECT g.subject_id FROM guests g"
            " WHERE g.linked_to IS NULL AND g.created_at < $1"
            f" AND {_NOT_HELD.format(subject='g.subject_id')}"
            " AND NOT EXISTS (SELECT FROM erased_subjects x WHERE x.subject_id = g.subject_id)"
            " AND NOT EXISTS (SELECT FROM devices d WHERE (d.subject_id = g.subject_id"
            "   OR d.first_subject = g.subject_id) AND d.last_seen >= $1)"
            " AND coalesce((SELECT e.recorded_at FROM events e WHERE e.subject_id = g.subject_id"
            "   ORDER BY e.position DESC LIMIT 1), g.created_at) < $1"
            " ORDER BY g.subject_id",
            cutoff,
        )
    ]
    keys = events = rows = 0
    acked: list[UUID] = []
    missing: list[UUID] = []
    if progress is not None:
        progress(policy.name, 0, len(idle))
    for done, guest in enumerate(idle, 1):
        certificate = await shred_subject(store, vault, guest, journal_file=journal_file)
        keys += len(certificate.key_versions_destroyed)
        events += certificate.events_unreadable
        rows += certificate.projection_rows_deleted
        acked += certificate.processes_acknowledged
        missing += certificate.processes_missing
        if progress is not None:
            progress(policy.name, done, len(idle))
    outcome = PolicyOutcome(policy.name, _days(policy.max_age), len(idle), keys, events, rows)
    return outcome, acked, missing


def _days(age: timedelta) -> float:
    return age.total_seconds() / 86400


async def recent_runs(store: EventStore, limit: int = 20) -> list[dict[str, object]]:
    """The last runs' rows (non-personal), newest first."""
    rows = await store.pool.fetch(
        "SELECT run_id, policy, max_age, started_at, finished_at, subjects, keys_destroyed,"
        " events_unreadable, projection_rows_deleted FROM retention_runs"
        " ORDER BY started_at DESC, policy LIMIT $1",
        limit,
    )
    return [dict(row) for row in rows]
