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
from uuid import UUID

import msgspec

from continuity.db import Queryable
from privacy.cipher import seal, unseal
from privacy.vault import KeyVault

AUDIT_KEY = "access-audit"
MAX_PURPOSE = 500


class AuditEntry(msgspec.Struct, frozen=True, gc=False):
    read_at: datetime
    agent_id: UUID
    subject_id: UUID
    what: str
    resource_id: UUID | None
    purpose: str


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
            "SELECT read_at, agent_id, subject_id, what, resource_id, key_version, purpose"
            " FROM access_audit WHERE subject_id = $1 ORDER BY read_at, id",
            subject_id,
        )
        entries = []
        for row in rows:
            key = await self.vault.system_key(AUDIT_KEY, row["key_version"])
            aad = _aad(row["agent_id"], row["subject_id"], row["what"], row["resource_id"])
            purpose = unseal(key, row["purpose"], aad).decode()
            entries.append(
                AuditEntry(
                    row["read_at"],
                    row["agent_id"],
                    row["subject_id"],
                    row["what"],
                    row["resource_id"],
                    purpose,
                )
            )
        return entries
