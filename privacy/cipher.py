"""AES-256-GCM under a data key (a subject's, or a system key), with associated data binding a
ciphertext to its row."""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12
DIGEST_BYTES = 16
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class DecryptionFailed(Exception):
    """The tag did not verify: wrong key, wrong row, or altered bytes."""


@dataclass(frozen=True, slots=True)
class SubjectKey:
    """An unwrapped data key, ready to use. The AESGCM object is built once and cached with it."""

    subject_id: UUID
    version: int
    aead: AESGCM = field(repr=False)
    mac_key: bytes = field(repr=False)

    @classmethod
    def from_bytes(cls, subject_id: UUID, version: int, key: bytes) -> SubjectKey:
        mac_key = hmac.digest(key, b"continuity-digest-key", hashlib.sha256)
        return cls(subject_id, version, AESGCM(key), mac_key)


@dataclass(frozen=True, slots=True)
class SystemKey:
    """An unwrapped system data key, named by purpose: for records that hold no personal data
    and must outlive any subject's erasure. No erasure destroys it."""

    name: str
    version: int
    aead: AESGCM = field(repr=False)
    mac_key: bytes = field(repr=False)
    """For keyed hashes (`keyed_hash`): an identifier looked up without being stored."""

    @classmethod
    def from_bytes(cls, name: str, version: int, key: bytes) -> SystemKey:
        mac_key = hmac.digest(key, b"continuity-system-mac-key", hashlib.sha256)
        return cls(name, version, AESGCM(key), mac_key)


DataKey = SubjectKey | SystemKey


def seal(key: DataKey, plaintext: bytes, aad: bytes) -> bytes:
    """nonce || ciphertext || tag, with a fresh random 96-bit nonce."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + key.aead.encrypt(nonce, plaintext, aad)


def unseal(key: DataKey, sealed: bytes, aad: bytes) -> bytes:
    try:
        return key.aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
    except InvalidTag:
        raise DecryptionFailed from None


def keyed_digest(key: SubjectKey, data: bytes) -> bytes:
    """A fingerprint of content that reveals nothing without the subject's key (and nothing at
    all once it is shredded): used to tell an idempotent retry from a reused event_id."""
    return hmac.digest(key.mac_key, data, hashlib.sha256)[:DIGEST_BYTES]


def event_aad(
    event_id: UUID,
    stream_id: UUID,
    version: int,
    topic: str,
    subject_id: UUID,
    channel: str,
    key_version: int,
    recorded_at: datetime,
) -> bytes:
    """Associated data for an event payload: every column read back as part of the event, so a
    payload copied to another row, or a row whose channel, key version or time was changed,
    fails to open."""
    micros = (recorded_at - _EPOCH) // _MICROSECOND
    return b"\x00".join(
        (
            _EVENT_AAD.pack(
                b"continuity-event-v2",
                event_id.bytes,
                stream_id.bytes,
                version,
                subject_id.bytes,
                key_version,
                micros,
            ),
            topic.encode("utf-8"),
            channel.encode("utf-8"),
        )
    )


_EVENT_AAD = struct.Struct(">19sx16sx16sxqx16sxqxq")
"""The fixed-width head of an event's associated data: the label and the columns of fixed
width, a zero byte between each (one pack instead of a join of seven: a rebuild makes one per
event)."""


def row_aad(table: str, subject_id: UUID, row_key: str = "") -> bytes:
    """Associated data for a projection row."""
    return b"\x00".join(
        (b"continuity-row-v1", table.encode(), subject_id.bytes, row_key.encode("utf-8"))
    )


def keyed_hash(key: SystemKey, value: bytes) -> bytes:
    """HMAC-SHA256 of `value` under the system key: equal values give equal hashes, and
    without the key a hash tells nothing, not even by trying every email address."""
    return hmac.digest(key.mac_key, value, hashlib.sha256)
