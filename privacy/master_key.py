"""The master key (KEK) that wraps every subject's data key.

A `KeyWrapper` is the one small interface a KMS or Vault would implement instead of the local
`Keyring`: wrap a data key, unwrap it, and name which master key did the wrapping.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12


class MasterKeyError(Exception):
    """A master key is missing, malformed or cannot unwrap a data key."""


class KeyWrapper(Protocol):
    @property
    def current_id(self) -> str: ...

    def wrap(self, data_key: bytes, context: bytes) -> tuple[str, bytes]:
        """Wrap with the current master key; returns (kek_id, wrapped)."""
        ...

    def unwrap(self, kek_id: str, wrapped: bytes, context: bytes) -> bytes: ...


class MasterKey:
    """One AES-256-GCM key-encryption key, named by a hash of itself."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise MasterKeyError(f"a master key must be {KEY_BYTES} bytes, got {len(key)}")
        self.id = hashlib.sha256(b"continuity-kek:" + key).hexdigest()[:16]
        self._aead = AESGCM(key)
        self._key = key

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def from_text(cls, text: str) -> MasterKey:
        try:
            raw = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise MasterKeyError("a master key must be base64 (32 random bytes)") from None
        return cls(raw)

    def to_text(self) -> str:
        return base64.b64encode(self._key).decode("ascii")

    def wrap(self, data_key: bytes, context: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, data_key, context)

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        try:
            return self._aead.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], context)
        except InvalidTag:
            raise MasterKeyError(f"master key {self.id} cannot unwrap this data key") from None


class Keyring:
    """The current master key plus earlier ones still accepted for unwrapping (during rotation)."""

    def __init__(self, keys: list[MasterKey]) -> None:
        if not keys:
            raise MasterKeyError("a keyring needs at least one master key")
        self.keys = keys
        self._by_id = {key.id: key for key in keys}

    @property
    def current(self) -> MasterKey:
        return self.keys[0]

    @property
    def current_id(self) -> str:
        return self.keys[0].id

    def wrap(self, data_key: bytes, context: bytes) -> tuple[str, bytes]:
        return self.current.id, self.current.wrap(data_key, context)

    def unwrap(self, kek_id: str, wrapped: bytes, context: bytes) -> bytes:
        key = self._by_id.get(kek_id)
        if key is None:
            raise MasterKeyError(f"master key {kek_id} is not configured")
        return key.unwrap(wrapped, context)

    @classmethod
    def from_text(cls, text: str) -> Keyring:
        """Parse base64 keys separated by commas or newlines; the first is current."""
        parts = [part for chunk in text.splitlines() for part in chunk.split(",")]
        return cls([MasterKey.from_text(part) for part in parts if part.strip()])

    def to_text(self) -> str:
        return "".join(key.to_text() + "\n" for key in self.keys)


def load_or_create_key_file(path: Path) -> Keyring:
    """Read the key file, creating it (mode 0600, one fresh key) on first start."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_key_file(path, Keyring([MasterKey.generate()]))
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise MasterKeyError(f"{path} must not be readable by others (mode {mode:o}; chmod 600)")
    return Keyring.from_text(path.read_text(encoding="ascii"))


def write_key_file(path: Path, keyring: Keyring) -> None:
    """Replace the key file atomically, never leaving it readable by others."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(keyring.to_text())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
