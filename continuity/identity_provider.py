"""An external identity provider (IdP) whose bearer tokens are accepted beside our own.

Its tokens are verified with its public keys only: from its JWKS URL, or one PEM public key.
Asymmetric algorithms only (RS256, ES256, EdDSA): a shared-secret algorithm (HS256) or "none"
would let anyone who knows the public key, or nobody at all, mint tokens in its name.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

ALGORITHMS: tuple[str, ...] = ("RS256", "ES256", "EdDSA")
"""Every algorithm an identity provider may sign with, and the default set."""

MIN_RSA_BITS = 2048
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})

IdpPublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


@dataclass(frozen=True)
class IdentityProvider:
    """Who the IdP is (`iss`), what its tokens for us say in `aud`, and where its keys are:
    `jwks_url` or `public_key` (PEM text), exactly one of them."""

    issuer: str
    audience: str
    jwks_url: str | None = None
    public_key: str | None = None
    algorithms: tuple[str, ...] = ALGORITHMS


def parse_algorithms(text: str) -> tuple[str, ...]:
    """A comma-separated list such as "RS256, EdDSA" (any case) as canonical names."""
    canonical = {name.lower(): name for name in ALGORITHMS}
    chosen: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name = canonical.get(part.lower())
        if name is None:
            never = part.upper().startswith("HS") or part.lower() == "none"
            why = " (a shared secret or no signature is never trusted from an IdP)" if never else ""
            raise ValueError(f"may list only {', '.join(ALGORITHMS)}; got {part!r}{why}")
        if name not in chosen:
            chosen.append(name)
    if not chosen:
        raise ValueError(f"must list at least one of {', '.join(ALGORITHMS)}")
    return tuple(chosen)


def check_jwks_url(url: str) -> str:
    """https, or plain http to this machine only (a JWKS fetched in clear could be swapped)."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError(f"must be an https:// URL, got {url!r}")
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS):
        return url
    raise ValueError("must be an https:// URL (plain http:// only for localhost)")


def load_public_key(pem: str) -> tuple[IdpPublicKey, str]:
    """The key in PEM text (a public key or an X.509 certificate) and the algorithm it signs
    with. Escaped newlines (`\\n`, as some environments must pass them) are accepted."""
    text = pem.strip().replace("\\n", "\n")
    if not text.startswith("-----BEGIN "):
        raise ValueError(
            "must be the PEM text of a public key (-----BEGIN PUBLIC KEY-----...), not a file"
            ' path; e.g. CONTINUITY_IDP_PUBLIC_KEY="$(cat idp-public.pem)"'
        )
    key: object
    try:
        if text.startswith("-----BEGIN CERTIFICATE-----"):
            key = x509.load_pem_x509_certificate(text.encode("ascii")).public_key()
        else:
            key = serialization.load_pem_public_key(text.encode("ascii"))
    except (ValueError, UnsupportedAlgorithm, UnicodeEncodeError):
        raise ValueError("is not a readable PEM public key or certificate") from None
    return key_and_algorithm(key)


def key_and_algorithm(key: object) -> tuple[IdpPublicKey, str]:
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"is an RSA key of {key.key_size} bits; at least {MIN_RSA_BITS}")
        return key, "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError(f"is an EC key on {key.curve.name}; ES256 needs P-256 (secp256r1)")
        return key, "ES256"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key, "EdDSA"
    raise ValueError("must be an RSA (RS256), EC P-256 (ES256) or Ed25519 (EdDSA) public key")
