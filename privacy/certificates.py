"""Signed erasure certificates: a JSON document with no personal data, signed with the service's
Ed25519 key (system signing key `erasure-certificates`), that a third party verifies offline with
the public key alone.

What is signed is the certificate's canonical JSON (keys sorted, no spaces): the signed document
carries the certificate, the signature, and the key id, so a verifier knows which published key to
use; the key itself is never taken from the document (anyone could put their own there).
"""

from __future__ import annotations

import base64
from typing import Any

import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from privacy.master_key import (
    ED25519,
    SignatureInvalid,
    Signer,
    signing_key_id,
    verify_signature,
)

CERTIFICATE_KEY = "erasure-certificates"
"""The system signing key that signs certificates."""


class Signature(msgspec.Struct, frozen=True):
    algorithm: str
    key_id: str
    """Names the public key (a hash of it): the one published at the well-known route."""
    value: str
    """The Ed25519 signature of the certificate's canonical JSON, base64."""


class SignedCertificate(msgspec.Struct, frozen=True):
    certificate: dict[str, Any]
    signature: Signature


def canonical(document: dict[str, Any]) -> bytes:
    """The bytes that are signed: JSON with sorted keys and no insignificant space."""
    return msgspec.json.encode(document, order="sorted")


def sign(signer: Signer, certificate: msgspec.Struct | dict[str, Any]) -> SignedCertificate:
    document: dict[str, Any] = msgspec.to_builtins(certificate)
    value = base64.b64encode(signer.sign(canonical(document))).decode("ascii")
    return SignedCertificate(document, Signature(signer.algorithm, signer.key_id, value))


def verify(signed: SignedCertificate, public_key: bytes | str) -> None:
    """Raise SignatureInvalid unless `signed` was signed by the key `public_key` (raw or PEM)
    and not changed since."""
    raw = public_key if isinstance(public_key, bytes) else _raw(public_key)
    if signed.signature.algorithm != ED25519:
        raise SignatureInvalid(f"the signature is not {ED25519}")
    if signed.signature.key_id != signing_key_id(raw):
        raise SignatureInvalid("the certificate names another signing key")
    try:
        value = base64.b64decode(signed.signature.value, validate=True)
    except ValueError:
        raise SignatureInvalid("the signature is not base64") from None
    if base64.b64encode(value).decode("ascii") != signed.signature.value:
        raise SignatureInvalid("the signature is not in canonical base64")  # no spare bits
    verify_signature(raw, canonical(signed.certificate), value)


def _raw(pem: str) -> bytes:
    try:
        key = serialization.load_pem_public_key(pem.encode("ascii"))
    except ValueError:
        raise SignatureInvalid("the public key is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureInvalid("the public key is not an Ed25519 key")
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
