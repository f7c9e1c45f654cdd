"""Erasure journal entries: signed over canonical bytes, chained; a changed byte, a removed,
duplicated or reordered entry, or an unknown key is refused, and nothing personal is in one."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import msgspec
import pytest

from privacy.certificates import canonical
from privacy.journal import GENESIS, JournalEntry, JournalInvalid, make_entry, verify_chain
from privacy.master_key import Ed25519Signer, SignatureInvalid, verify_signature

SIGNER = Ed25519Signer.generate()
KEYS = {SIGNER.key_id: SIGNER.public_key}
T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def chain(n: int, signer: Ed25519Signer = SIGNER) -> list[JournalEntry]:
    entries: list[JournalEntry] = []
    previous = GENESIS
    for i in range(1, n + 1):
        entry = make_entry(signer, i, uuid4(), T0 + timedelta(seconds=i), [2, 1], previous)
        entries.append(entry)
        previous = entry.hash
    return entries


def test_a_chain_verifies_and_holds_only_pseudonyms_times_and_key_versions() -> None:
    entries = chain(3)
    assert verify_chain(reversed(entries), KEYS, "file") == entries
    assert entries[0].key_versions == [1, 2]
    assert [e.previous for e in entries[1:]] == [e.hash for e in entries[:-1]]
    fields = set(msgspec.to_builtins(entries[0]))
    assert fields == {
        "sequence",
        "subject_id",
        "erased_at",
        "key_versions",
        "previous",
        "key_id",
        "signature",
        "hash",
    }


def test_an_entry_survives_a_round_trip_through_json_and_another_time_zone() -> None:
    [entry] = chain(1)
    decoded = msgspec.json.decode(msgspec.json.encode(entry), type=JournalEntry)
    verify_chain([decoded], KEYS, "file")
    elsewhere = msgspec.structs.replace(
        entry, erased_at=entry.erased_at.astimezone(datetime.now().astimezone().tzinfo)
    )
    verify_chain([elsewhere], KEYS, "file")


@pytest.mark.parametrize(
    "change",
    [
        {"subject_id": uuid4()},
        {"erased_at": T0 + timedelta(microseconds=1)},
        {"key_versions": [1]},
        {"previous": "f" * 64},
        {"sequence": 2},
    ],
    ids=["subject", "time", "keys", "previous", "sequence"],
)
def test_any_changed_field_breaks_the_signature(change: dict[str, object]) -> None:
    entries = chain(2)
    forged = msgspec.structs.replace(entries[0], **change)
    with pytest.raises(JournalInvalid, match="forged or altered") as refused:
        verify_chain([forged], KEYS, "journal.jsonl")
    assert refused.value.source == "journal.jsonl"


def test_every_flipped_byte_of_the_signature_is_refused() -> None:
    [entry] = chain(1)
    raw = bytearray(msgspec.json.encode(entry))
    start = raw.index(entry.signature.encode())
    for i in range(start, start + len(entry.signature)):
        tampered = bytearray(raw)
        tampered[i] = ord("A") if tampered[i] != ord("A") else ord("B")
        forged = msgspec.json.decode(bytes(tampered), type=JournalEntry)
        with pytest.raises(JournalInvalid):
            verify_chain([forged], KEYS, "file")


def test_a_changed_hash_is_refused() -> None:
    [entry] = chain(1)
    with pytest.raises(JournalInvalid, match="hash does not match"):
        verify_chain([msgspec.structs.replace(entry, hash="0" * 64)], KEYS, "file")


def test_a_removed_entry_breaks_the_chain() -> None:
    entries = chain(4)
    with pytest.raises(JournalInvalid, match="jumps from entry 1 to 3") as refused:
        verify_chain([entries[0], *entries[2:]], KEYS, "file")
    assert refused.value.sequence == 2


def test_a_removed_entry_renumbered_and_re_signed_by_another_key_is_refused() -> None:
    entries = chain(3)
    other = Ed25519Signer.generate()
    swapped = make_entry(
        other, 2, entries[2].subject_id, T0, entries[2].key_versions, entries[0].hash
    )
    with pytest.raises(JournalInvalid, match="not a known journal key"):
        verify_chain([entries[0], swapped], KEYS, "file")


def test_an_entry_from_another_chain_is_refused_even_with_a_valid_signature() -> None:
    ours, theirs = chain(2), chain(2)
    with pytest.raises(JournalInvalid, match="does not follow") as refused:
        verify_chain([ours[0], theirs[1]], KEYS, "file")
    assert refused.value.sequence == 2


def test_a_duplicated_entry_is_refused() -> None:
    entries = chain(2)
    with pytest.raises(JournalInvalid, match="twice"):
        verify_chain([entries[0], entries[1], entries[1]], KEYS, "file")


def test_the_signature_cannot_pass_for_a_certificate_signature() -> None:
    """Signed bytes start with the journal's domain string: a certificate signed by the same
    key over the same fields would not verify as an entry, nor the other way round."""
    [entry] = chain(1)
    body = {k: v for k, v in msgspec.to_builtins(entry).items() if k not in {"signature", "hash"}}
    with pytest.raises(SignatureInvalid):
        verify_signature(SIGNER.public_key, canonical(body), base64.b64decode(entry.signature))
