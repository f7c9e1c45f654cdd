"""A customer's email addresses and phone numbers, known only by keyed hash.

An inbound email or SMS names its sender by address or number; this finds the customer by
HMAC-SHA256 of the normalised identifier under the system key `identifiers`. Nothing here
stores the identifier itself, so the table says nothing to whoever reads it without the key.
A lookup tries every version of the key, so a rotation loses no registration.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal
from uuid import UUID

import msgspec

from aggregates.errors import DomainError, InvalidState, InvalidValue
from continuity.db import Queryable
from continuity.errors import SubjectErased
from privacy.cipher import SystemKey, keyed_hash
from privacy.vault import KeyVault

IDENTIFIER_KEY = "identifiers"
MAX_IDENTIFIER = 320
Kind = Literal["email", "phone"]

_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s.]{1,63}")
_PHONE_SEPARATORS = re.compile(r"[\s().-]")
_PHONE = re.compile(r"\+[1-9][0-9]{6,14}")


def normalise(kind: Kind, value: str) -> str:
    """The one spelling of an identifier: an email address lowercased; a phone number in
    E.164 (+ and 7 to 15 digits), without spaces, dots, dashes or brackets."""
    if len(value) > MAX_IDENTIFIER:
        raise InvalidValue(f"an identifier is at most {MAX_IDENTIFIER} characters", "value")
    if kind == "email":
        email = value.strip().lower()
        if not _EMAIL.fullmatch(email):
            raise InvalidValue("an email address is name@domain.tld", "value")
        return email
    phone = _PHONE_SEPARATORS.sub("", value)
    if phone.startswith("00"):
        phone = "+" + phone[2:]
    if not _PHONE.fullmatch(phone):
        raise InvalidValue(
            "a phone number is in international form, such as +4915112345678", "value"
        )
    return phone


def _digest(key: SystemKey, kind: Kind, value: str) -> bytes:
    return keyed_hash(key, f"{kind}\x00{value}".encode())


class Suppressed(DomainError):
    """The identifier was an erased subject's: it may not come back until the suppression is
    lifted (a compliance officer's decision)."""


async def suppress(conn: Queryable, subject_ids: list[UUID]) -> int:
    """Move the subjects' identifiers to the suppression list (an erasure): they no longer lead
    to the erased subjects, and nothing may take them up again until lifted; how many."""
    moved: int = await conn.fetchval(
        "WITH gone AS (DELETE FROM identifiers WHERE subject_id = ANY($1::uuid[])"
        " RETURNING digest, kind, key_version)"
        " , put AS (INSERT INTO suppressed_identifiers (digest, kind, key_version)"
        " SELECT digest, kind, key_version FROM gone ON CONFLICT (digest) DO UPDATE"
        " SET suppressed_at = now(), lifted_at = NULL RETURNING 1)"
        " SELECT count(*) FROM put",
        subject_ids,
    )
    return moved


class RegisteredIdentifier(msgspec.Struct, frozen=True, gc=False):
    """That an identifier of `kind` is registered to a subject, and since when: the value is
    not held (only its keyed hash), so nothing can say which address or number it is."""

    kind: Kind
    registered_at: datetime


class Identifiers:
    def __init__(self, pool: Queryable, vault: KeyVault) -> None:
        self.pool = pool
        self.vault = vault

    async def digests(self, kind: Kind, value: str) -> list[bytes]:
        """The identifier's hash under every version of the key, the current one first."""
        return await self._digests(kind, value)

    async def _digests(self, kind: Kind, value: str) -> list[bytes]:
        current = await self.vault.system_key(IDENTIFIER_KEY)
        keys = [current] + [
            await self.vault.system_key(IDENTIFIER_KEY, v)
            for v in range(current.version - 1, 0, -1)
        ]
        normal = normalise(kind, value)
        return [_digest(key, kind, normal) for key in keys]

    async def of_subject(self, subject_id: UUID) -> list[RegisteredIdentifier]:
        """The kinds of identifier registered to the subject, oldest first."""
        rows = await self.pool.fetch(
            "SELECT kind, registered_at FROM identifiers WHERE subject_id = $1"
            " ORDER BY registered_at, kind",
            subject_id,
        )
        return [RegisteredIdentifier(row["kind"], row["registered_at"]) for row in rows]

    async def lift(self, kind: Kind, value: str) -> bool:
        """Lift the suppression of an identifier (a compliance officer's decision); whether
        one stood."""
        lifted: bool = await self.pool.fetchval(
            "WITH lifted AS (UPDATE suppressed_identifiers SET lifted_at = now()"
            " WHERE digest = ANY($1::bytea[]) AND lifted_at IS NULL RETURNING 1)"
            " SELECT count(*) > 0 FROM lifted",
            await self._digests(kind, value),
        )
        return lifted

    async def find(self, kind: Kind, value: str) -> UUID | None:
        """The subject the identifier is registered to, if any."""
        subject: UUID | None = await self.pool.fetchval(
            "SELECT subject_id FROM identifiers WHERE digest = ANY($1::bytea[]) LIMIT 1",
            await self._digests(kind, value),
        )
        return subject

    async def register(self, subject_id: UUID, kind: Kind, value: str) -> bool:
        """Register the identifier to the subject: True if it is new, False if it was theirs
        already; InvalidState if it is another subject's, Suppressed if it was an erased
        subject's and the suppression stands, SubjectErased if the subject is erased."""
        digests = await self._digests(kind, value)
        key_version = (await self.vault.system_key(IDENTIFIER_KEY)).version
        if await self.vault.erased_among([subject_id], self.pool):
            raise SubjectErased(subject_id)  # its identifiers went to the suppression list
        if await self.pool.fetchval(
            "SELECT EXISTS (SELECT FROM suppressed_identifiers"
            " WHERE digest = ANY($1::bytea[]) AND lifted_at IS NULL)",
            digests,
        ):
            raise Suppressed(f"this {kind} belonged to an erased customer: it is suppressed")
        owner: UUID | None = await self.pool.fetchval(
            "SELECT subject_id FROM identifiers WHERE digest = ANY($1::bytea[]) LIMIT 1", digests
        )
        if owner is None:
            owner = await self.pool.fetchval(
                "INSERT INTO identifiers (digest, kind, subject_id, key_version)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (digest) DO NOTHING RETURNING subject_id",
                digests[0],
                kind,
                subject_id,
                key_version,
            )
            if owner is not None:
                return True
            return await self.register(subject_id, kind, value)  # lost a race: see who won
        if owner != subject_id:
            raise InvalidState(f"this {kind} is registered to another customer")
        return False
