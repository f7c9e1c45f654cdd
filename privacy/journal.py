"""The erasure journal's entries: signed, chained, and free of personal data.

An entry says that subject `subject_id` (a pseudonym) was erased at `erased_at` and which of
their key versions were destroyed. It is signed with the service's Ed25519 key for the journal
(system signing key `erasure-journal`, kept apart from the certificates' key so neither signs
what the other should) over its canonical JSON, prefixed by a domain string so the signature
cannot pass for a certificate's. Each entry names the hash of the one before it (`previous`),
and its own `hash` covers the signed bytes and the signature: changing an entry breaks its
signature, removing one breaks the next entry's `previous`, and only a cut at the very end goes
unseen by the chain alone (the table and the file, read together, cover that).

Verifying needs public keys only; nothing here touches a database or a file.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec

from privacy.certificates import canonical
from privacy.master_key import SignatureInvalid, Signer, verify_signature

JOURNAL_KEY = "erasure-journal"
"""The system signing key that signs journal entries."""
DOMAIN = b"continuity-erasure-journal-v1\n"
GENESIS = "0" * 64
"""What the first entry names as the previous entry's hash."""


class JournalEntry(msgspec.Struct, frozen=True):
    sequence: int
    subject_id: UUID
    erased_at: datetime
    key_versions: list[int]
    previous: str
    """The previous entry's `hash` (GENESIS for the first)."""
    key_id: str
    """The signing key (a hash of its public key)."""
    signature: str
    """Ed25519 over DOMAIN + the canonical JSON of the fields above, base64."""
    hash: str
    """SHA-256 (hex) of the signed bytes and the signature: what the next entry names."""


class JournalRef(msgspec.Struct, frozen=True):
    """Names one entry, as an erasure certificate does: a third party ties the two together
    by the sequence and the hash."""

    subject_id: UUID
    sequence: int
    hash: str


class JournalInvalid(Exception):
    """The journal cannot be trusted from `sequence` on: an entry forged or altered, or the
    chain broken (an entry removed, reordered, or from another journal)."""

    def __init__(self, source: str, sequence: int, reason: str) -> None:
        super().__init__(f"{source}: entry {sequence}: {reason}")
        self.source = source
        self.sequence = sequence
        self.reason = reason


def _signed_bytes(
    sequence: int,
    subject_id: UUID,
    erased_at: datetime,
    key_versions: list[int],
    previous: str,
    key_id: str,
) -> bytes:
    body: dict[str, Any] = {
        "sequence": sequence,
        "subject_id": str(subject_id),
        "erased_at": msgspec.to_builtins(erased_at.astimezone(UTC)),
        "key_versions": sorted(key_versions),
        "previous": previous,
        "key_id": key_id,
    }
    return DOMAIN + canonical(body)


def _hash(signed: bytes, signature: str) -> str:
    return hashlib.sha256(signed + b"\n" + signature.encode("ascii")).hexdigest()


def make_entry(
    signer: Signer,
    sequence: int,
    subject_id: UUID,
    erased_at: datetime,
    key_versions: list[int],
    previous: str,
) -> JournalEntry:
    erased_at = erased_at.astimezone(UTC)
    versions = sorted(key_versions)
    signed = _signed_bytes(sequence, subject_id, erased_at, versions, previous, signer.key_id)
    signature = base64.b64encode(signer.sign(signed)).decode("ascii")
    return JournalEntry(
        sequence,
        subject_id,
        erased_at,
        versions,
        previous,
        signer.key_id,
        signature,
        _hash(signed, signature),
    )


def verify_entry(entry: JournalEntry, public_keys: Mapping[str, bytes], source: str) -> None:
    """Raise JournalInvalid unless `entry` is signed by one of `public_keys` (by key id) and
    unchanged since."""
    key = public_keys.get(entry.key_id)
    if key is None:
        raise JournalInvalid(
            source,
            entry.sequence,
            f"signed by key {entry.key_id}, which is not a known journal key (pass the"
            " service's journal public key with --public-key if this database never held it)",
        )
    signed = _signed_bytes(
        entry.sequence,
        entry.subject_id,
        entry.erased_at,
        entry.key_versions,
        entry.previous,
        entry.key_id,
    )
    try:
        value = base64.b64decode(entry.signature, validate=True)
        verify_signature(key, signed, value)
    except (ValueError, SignatureInvalid):
        raise JournalInvalid(
            source, entry.sequence, "the signature does not verify: the entry was forged or altered"
        ) from None
    if entry.hash != _hash(signed, entry.signature):
        raise JournalInvalid(source, entry.sequence, "its hash does not match its content")


def verify_chain(
    entries: Iterable[JournalEntry], public_keys: Mapping[str, bytes], source: str
) -> list[JournalEntry]:
    """Verify every entry and that they form one chain from the first: sequences 1, 2, 3...,
    each naming the previous entry's hash. Returns them in order; raises JournalInvalid at the
    first fault."""
    ordered = sorted(entries, key=lambda e: e.sequence)
    previous = GENESIS
    for expected, entry in enumerate(ordered, start=1):
        verify_entry(entry, public_keys, source)
        if entry.sequence < expected:
            raise JournalInvalid(source, entry.sequence, "it appears twice")
        if entry.sequence != expected:
            raise JournalInvalid(
                source,
                expected,
                f"missing: the journal jumps from entry {expected - 1} to {entry.sequence}"
                " (an entry was removed)",
            )
        if entry.previous != previous:
            raise JournalInvalid(
                source,
                entry.sequence,
                "it does not follow the entry before it (an entry was removed, replaced or"
                " reordered)",
            )
        previous = entry.hash
    return ordered
