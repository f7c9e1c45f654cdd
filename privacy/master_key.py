"""The master key (KEK) that wraps every stored key, and the signing interface beside it.

A `KeyWrapper` is the one small interface a KMS or Vault would implement instead of the local
`Keyring`: wrap a data key, unwrap it, and name which master key did the wrapping.

A `Signer` is its counterpart for signatures (erasure certificates): a key id, the public key,
and `sign`. `Ed25519Signer` is the local implementation, whose private key is stored only
wrapped by the master key (`privacy.system_keys`); a KMS signing key could stand in for it.
Verifying needs the public key alone (`verify_signature`), never the vault or the master key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12


ED25519 = "Ed25519"


class MasterKeyError(Exception):
    """A master key is missing, malformed or cannot unwrap a data key."""


class SignatureInvalid(Exception):
    """A signature does not verify under the given public key: altered data or signature, or
    another key."""


class KeyWrapper(Protocol):
    @property
    def current_id(self) -> str: ...

    def wrap(self, data_key: bytes, context: bytes) -> tuple[str, bytes]:
        """Wrap with the current master key; returns (kek_id, wrapped)."""
        ...

    def unwrap(self, kek_id: str, wrapped: bytes, context: bytes) -> bytes: ...


class Signer(Protocol):
    """Signs with a private key its caller never sees."""

    @property
    def key_id(self) -> str:
        """Names the key pair; derived from the public key, so it cannot name another one."""
        ...

    @property
    def algorithm(self) -> str: ...

    @property
    def public_key(self) -> bytes:
        """The raw public key (32 bytes for Ed25519)."""
        ...

    def public_key_pem(self) -> str: ...

    def sign(self, data: bytes) -> bytes: ...


class Ed25519Signer:
    """A local Ed25519 signing key."""

    algorithm = ED25519

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private = private_key
        self.public_key = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.key_id = signing_key_id(self.public_key)

    @classmethod
    def generate(cls) -> Ed25519Signer:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> Ed25519Signer:
        return cls(Ed25519PrivateKey.from_private_bytes(raw))

    def private_bytes(self) -> bytes:
        """The raw private key, for wrapping under the master key and nothing else."""
        return self._private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )

    def public_key_pem(self) -> str:
        return public_key_pem(self.public_key)

    def sign(self, data: bytes) -> bytes:
        return self._private.sign(data)

    def __repr__(self) -> str:
        return f"Ed25519Signer(key_id={self.key_id!r})"


def signing_key_id(public_key: bytes) -> str:
    return hashlib.sha256(b"continuity-signing-key:" + public_key).hexdigest()[:32]


def public_key_pem(public_key: bytes) -> str:
    return (
        Ed25519PublicKey.from_public_bytes(public_key)
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def verify_signature(public_key: bytes | str, data: bytes, signature: bytes) -> None:
    """Check an Ed25519 `signature` of `data` with the public key alone, raw or PEM; raises
    SignatureInvalid if it does not verify."""
    if isinstance(public_key, str):
        loaded = serialization.load_pem_public_key(public_key.encode("ascii"))
        if not isinstance(loaded, Ed25519PublicKey):
            raise SignatureInvalid("the public key is not an Ed25519 key")
        key = loaded
    else:
        key = Ed25519PublicKey.from_public_bytes(public_key)
    try:
        key.verify(signature, data)
    except InvalidSignature:
        raise SignatureInvalid("the signature does not verify") from None


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
