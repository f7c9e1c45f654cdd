"""Legal holds: while one stands on a subject, no erasure of the subject proceeds.

A compliance officer places a hold with a reason (free text, which may name anyone: sealed with
the system data key `legal-holds`, bound by the associated data to the subject and the officer)
and lifts it later; placing a hold again replaces it, keeping the old one as lifted, so the table
is the history of every hold. Placing, lifting and an erasure's start take the same per-subject
lock (`lock_subject`), so an erasure never starts past a hold placed before it.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg
import msgspec

from aggregates.errors import InvalidState, InvalidValue
from continuity.db import Queryable
from continuity.errors import SubjectErased
from privacy.cipher import seal, unseal
from privacy.vault import KeyVault

HOLD_KEY = "legal-holds"
MAX_REASON = 500
_LOCK = 0x4C484F4C  # "LHOL": the advisory lock space of an erasure's subjects


class Hold(msgspec.Struct, frozen=True):
    subject_id: UUID
    reason: str
    placed_by: UUID
    placed_at: datetime
    lifted_by: UUID | None = None
    lifted_at: datetime | None = None


def _aad(subject_id: UUID, placed_by: UUID) -> bytes:
    return b"\x00".join((b"continuity-legal-hold-v1", subject_id.bytes, placed_by.bytes))


async def lock_subject(conn: Queryable, subject_ids: list[UUID]) -> None:
    """Hold the subjects' erasure lock until the caller's transaction ends."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext(s::text)) FROM unnest($2::uuid[]) AS s",
        _LOCK,
        sorted(set(subject_ids)),
    )


async def subject_known(conn: Queryable, subject_id: UUID) -> bool:
    """Whether Continuity holds or held data of the subject (a key, a tombstone, a guest)."""
    known: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT FROM subject_keys WHERE subject_id = $1)"
        " OR EXISTS (SELECT FROM erased_subjects WHERE subject_id = $1)"
        " OR EXISTS (SELECT FROM guests WHERE subject_id = $1)",
        subject_id,
    )
    return known


class LegalHolds:
    def __init__(self, pool: asyncpg.Pool, vault: KeyVault) -> None:
        self.pool = pool
        self.vault = vault

    async def _open(self, row: asyncpg.Record) -> Hold:
        key = await self.vault.system_key(HOLD_KEY, row["key_version"])
        reason = unseal(key, row["reason"], _aad(row["subject_id"], row["placed_by"])).decode()
        return Hold(
            row["subject_id"],
            reason,
            row["placed_by"],
            row["placed_at"],
            row["lifted_by"],
            row["lifted_at"],
        )

    async def place(self, subject_id: UUID, officer: UUID, reason: str) -> Hold:
        """Place a hold (replacing one that stands); SubjectErased if the subject is erased
        already, InvalidState while an erasure of theirs is executing."""
        if not reason.strip():
            raise InvalidValue("a legal hold needs a reason", "reason")
        key = await self.vault.system_key(HOLD_KEY)
        sealed = seal(key, reason.encode(), _aad(subject_id, officer))
        async with self.pool.acquire() as conn, conn.transaction():
            await lock_subject(conn, [subject_id])
            if await conn.fetchval(
                "SELECT EXISTS (SELECT FROM erased_subjects WHERE subject_id = $1)", subject_id
            ):
                raise SubjectErased(subject_id)
            if await conn.fetchval(
                "SELECT EXISTS (SELECT FROM erasure_requests WHERE subject_id = $1"
                " AND state = 'executing')",
                subject_id,
            ):
                raise InvalidState("an erasure of this subject is executing", "subject_id")
            await conn.execute(
                "UPDATE legal_holds SET lifted_at = now(), lifted_by = $2"
                " WHERE subject_id = $1 AND lifted_at IS NULL",
                subject_id,
                officer,
            )
            row = await conn.fetchrow(
                "INSERT INTO legal_holds (subject_id, placed_by, key_version, reason)"
                " VALUES ($1, $2, $3, $4) RETURNING *",
                subject_id,
                officer,
                key.version,
                sealed,
            )
        assert row is not None  # INSERT ... RETURNING always returns the row
        return await self._open(row)

    async def lift(self, subject_id: UUID, officer: UUID) -> Hold | None:
        """Lift the hold that stands on the subject; None if none stood."""
        async with self.pool.acquire() as conn, conn.transaction():
            await lock_subject(conn, [subject_id])
            row = await conn.fetchrow(
                "UPDATE legal_holds SET lifted_at = now(), lifted_by = $2"
                " WHERE subject_id = $1 AND lifted_at IS NULL RETURNING *",
                subject_id,
                officer,
            )
        return None if row is None else await self._open(row)

    async def blocking(self, subject_id: UUID, conn: Queryable | None = None) -> Hold | None:
        """A hold that blocks the subject's erasure: on them, or on a guest linked to them
        (whom their erasure erases too)."""
        row = await (conn or self.pool).fetchrow(
            "SELECT * FROM legal_holds WHERE lifted_at IS NULL AND (subject_id = $1"
            " OR subject_id IN (SELECT subject_id FROM guests WHERE linked_to = $1))"
            " ORDER BY placed_at, hold_id LIMIT 1",
            subject_id,
        )
        return None if row is None else await self._open(row)

    async def standing(self, subject_id: UUID) -> Hold | None:
        return await self.standing_among(self.pool, [subject_id])

    async def standing_among(self, conn: Queryable, subject_ids: list[UUID]) -> Hold | None:
        """A hold that stands on one of the subjects (the oldest), if any."""
        row = await conn.fetchrow(
            "SELECT * FROM legal_holds WHERE subject_id = ANY($1::uuid[]) AND lifted_at IS NULL"
            " ORDER BY placed_at, hold_id LIMIT 1",
            subject_ids,
        )
        return None if row is None else await self._open(row)
