"""The access audit: every agent read of a customer's data, recorded before the data is served.

An entry says who read (the agent's id), whose data (the subject's pseudonymous id), what (the
route's template and the resource's id) and when, in clear; the purpose the agent gave
(`X-Purpose`, free text that may name anyone) is sealed with the system data key `access-audit`,
bound by the associated data to the entry's clear columns. No erasure touches the table or the
key: the audit is evidence of processing and outlives the subject (migration 0011 makes it
append-only, like the log).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import msgspec

from continuity import cursors
from continuity.db import Queryable
from privacy.cipher import seal, unseal
from privacy.vault import KeyVault

AUDIT_KEY = "access-audit"
MAX_PURPOSE = 500
MAX_PAGE = 100
Order = Literal["newest", "oldest"]


class AuditEntry(msgspec.Struct, frozen=True, gc=False):
    read_at: datetime
    agent_id: UUID
    subject_id: UUID
    what: str
    resource_id: UUID | None
    purpose: str
    entry_id: int = 0
    """The row's id: with `read_at`, its place in the audit's order."""


class AuditFilter(msgspec.Struct, frozen=True, kw_only=True):
    """Entries by `agent_id` (who read), of `subject_id`, read at or after `since` and before
    `until`, and (for an export that stops where it started) with an id up to `upto`; each
    one left None filters nothing."""

    agent_id: UUID | None = None
    subject_id: UUID | None = None
    since: datetime | None = None
    until: datetime | None = None
    upto: int | None = None


class AuditPage(msgspec.Struct, frozen=True, gc=False):
    entries: list[AuditEntry]
    next_cursor: str | None


_SELECT = "SELECT id, read_at, agent_id, subject_id, what, resource_id, key_version, purpose"


def _aad(agent_id: UUID, subject_id: UUID, what: str, resource_id: UUID | None) -> bytes:
    resource = resource_id.bytes if resource_id is not None else b""
    return b"\x00".join(
        (b"continuity-access-audit-v1", agent_id.bytes, subject_id.bytes, what.encode(), resource)
    )


class AccessAudit:
    def __init__(self, pool: Queryable, vault: KeyVault) -> None:
        self.pool = pool
        self.vault = vault

    async def record(
        self,
        agent_id: UUID,
        subject_id: UUID,
        what: str,
        purpose: str,
        resource_id: UUID | None = None,
    ) -> None:
        key = await self.vault.system_key(AUDIT_KEY)
        sealed = seal(key, purpose.encode(), _aad(agent_id, subject_id, what, resource_id))
        await self.pool.execute(
            "INSERT INTO access_audit (agent_id, subject_id, what, resource_id, key_version,"
            " purpose) VALUES ($1, $2, $3, $4, $5, $6)",
            agent_id,
            subject_id,
            what,
            resource_id,
            key.version,
            sealed,
        )

    async def of_subject(self, subject_id: UUID) -> list[AuditEntry]:
        """Every read of the subject's data, oldest first, the purposes opened."""
        rows = await self.pool.fetch(
            f"{_SELECT} FROM access_audit WHERE subject_id = $1 ORDER BY read_at, id", subject_id
        )
        return [await self._open(row) for row in rows]

    async def page(
        self,
        where: AuditFilter,
        *,
        limit: int = 20,
        order: Order = "newest",
        cursor: str | None = None,
    ) -> AuditPage:
        """One page of the entries `where` selects, by the time they were read (newest first
        unless `oldest`), after `cursor` (the previous page's `next_cursor`); BadCursor for a
        cursor this list did not give."""
        conditions: list[str] = []
        args: list[object] = []

        def given(sql: str, value: object) -> None:
            args.append(value)
            conditions.append(sql.format(f"${len(args)}"))

        if where.agent_id is not None:
            given("agent_id = {}", where.agent_id)
        if where.subject_id is not None:
            given("subject_id = {}", where.subject_id)
        if where.since is not None:
            given("read_at >= {}", where.since)
        if where.until is not None:
            given("read_at < {}", where.until)
        if where.upto is not None:
            given("id <= {}", where.upto)
        if cursor is not None:
            at, entry_id = cursors.decode(cursor, tuple[datetime, int])
            args.extend([at, entry_id])
            sign = "<" if order == "newest" else ">"
            conditions.append(f"(read_at, id) {sign} (${len(args) - 1}, ${len(args)})")
        direction = "DESC" if order == "newest" else "ASC"
        size = min(max(limit, 1), MAX_PAGE)
        args.append(size + 1)  # one more than asked: whether there is a next page
        rows = await self.pool.fetch(
            f"{_SELECT} FROM access_audit"
            + (" WHERE " + " AND ".join(conditions) if conditions else "")
            + f" ORDER BY read_at {direction}, id {direction} LIMIT ${len(args)}",
            *args,
        )
        entries = [await self._open(row) for row in rows[:size]]
        more = len(rows) > size
        last = entries[-1] if entries else None
        next_cursor = cursors.encode([last.read_at, last.entry_id]) if more and last else None
        return AuditPage(entries, next_cursor)

    async def last_of(self, subject_id: UUID) -> tuple[int, int]:
        """How many entries the subject has, and the highest entry id among them (0: none)."""
        row = await self.pool.fetchrow(
            "SELECT count(*), coalesce(max(id), 0) FROM access_audit WHERE subject_id = $1",
            subject_id,
        )
        assert row is not None
        return row[0], row[1]

    async def _open(self, row: Any) -> AuditEntry:
        key = await self.vault.system_key(AUDIT_KEY, row["key_version"])
        aad = _aad(row["agent_id"], row["subject_id"], row["what"], row["resource_id"])
        return AuditEntry(
            row["read_at"],
            row["agent_id"],
            row["subject_id"],
            row["what"],
            row["resource_id"],
            unseal(key, row["purpose"], aad).decode(),
            row["id"],
        )
