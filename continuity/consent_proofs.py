"""Consent proofs: each choice of a subject's consent ledger, copied in the append's own
transaction to `consent_proofs` (migration 0016), where it outlives the subject's erasure.

The ledger's events are sealed with the subject's key, so an erasure makes them unreadable; yet
the business must still be able to prove that consent was given or withdrawn, under which
policy, when and how. A proof holds no personal data: the subject's pseudonymous id, the event's
position and time in clear; the purpose, the choice, the policy version, the channel and the
source sealed with the system data key `consent-proofs`, bound by the associated data to those
clear columns (a proof copied to another row or subject fails to open). No erasure touches the
table or the key; the table is append-only. It is not a projection: a projection is rebuilt
from the log, and a rebuild after an erasure could no longer read the choices it proves.
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import msgspec
from eventsourcing.utils import get_topic

from aggregates.consent import Consent
from continuity.db import Conn, Queryable
from continuity.errors import IntegrityViolation
from privacy.cipher import DecryptionFailed, seal, unseal
from privacy.vault import KeyVault
from projections.envelope import Envelope

PROOF_KEY = "consent-proofs"
TOPIC = get_topic(Consent.Recorded)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = datetime.resolution


class Proof(msgspec.Struct, frozen=True, gc=False):
    """One recorded choice, as a compliance officer reads it."""

    position: int
    subject_id: UUID
    recorded_at: datetime
    purpose: str
    given: bool
    policy_version: str | None
    channel: str
    source: str


class _Sealed(msgspec.Struct, array_like=True, frozen=True, gc=False):
    purpose: str
    given: bool
    policy_version: str | None
    channel: str
    source: str


_DECODER = msgspec.msgpack.Decoder(_Sealed)


def _aad(position: int, subject_id: UUID, recorded_at: datetime) -> bytes:
    micros = (recorded_at - _EPOCH) // _MICROSECOND
    return b"\x00".join(
        (
            b"continuity-consent-proof-v1",
            position.to_bytes(8, "big", signed=True),
            subject_id.bytes,
            micros.to_bytes(8, "big", signed=True),
        )
    )


class ConsentProofs:
    """Writes proofs in an append's transaction (`continuity.repository.Evidence`) and reads
    them back."""

    topics: frozenset[str] = frozenset({TOPIC})

    def __init__(self, vault: KeyVault) -> None:
        self.vault = vault

    async def prepare(self) -> None:
        """Fetch the key before the append's transaction, so writing needs no second
        connection (it is cached for the life of the process after that)."""
        await self.vault.system_key(PROOF_KEY)

    async def write(self, conn: Conn, envelopes: list[Envelope]) -> None:
        """A proof of each ledger choice among `envelopes` (appended in this transaction)."""
        chosen = [e for e in envelopes if isinstance(e.event, Consent.Recorded)]
        if not chosen:
            return
        key = await self.vault.system_key(PROOF_KEY)
        rows = []
        for envelope in chosen:
            event = envelope.event
            assert isinstance(event, Consent.Recorded)
            sealed = _Sealed(
                event.purpose, event.given, event.policy_version, envelope.channel, event.source
            )
            aad = _aad(envelope.position, envelope.subject_id, envelope.recorded_at)
            rows.append(
                (
                    envelope.position,
                    envelope.subject_id,
                    envelope.recorded_at,
                    key.version,
                    seal(key, msgspec.msgpack.encode(sealed), aad),
                )
            )
        await conn.executemany(
            "INSERT INTO consent_proofs (position, subject_id, recorded_at, key_version, proof)"
            " VALUES ($1, $2, $3, $4, $5)",
            rows,
        )

    async def of_subject(self, conn: Queryable, subject_id: UUID) -> list[Proof]:
        """Every choice the subject made, oldest first, opened."""
        rows = await conn.fetch(
            "SELECT position, subject_id, recorded_at, key_version, proof FROM consent_proofs"
            " WHERE subject_id = $1 ORDER BY position",
            subject_id,
        )
        proofs = []
        for row in rows:
            key = await self.vault.system_key(PROOF_KEY, row["key_version"])
            aad = _aad(row["position"], row["subject_id"], row["recorded_at"])
            try:
                opened = _DECODER.decode(unseal(key, row["proof"], aad))
            except (DecryptionFailed, msgspec.DecodeError):
                raise IntegrityViolation(
                    f"the consent proof at position {row['position']}"
                ) from None
            proofs.append(
                Proof(
                    row["position"],
                    row["subject_id"],
                    row["recorded_at"],
                    opened.purpose,
                    opened.given,
                    opened.policy_version,
                    opened.channel,
                    opened.source,
                )
            )
        return proofs
