"""Which bearer tokens are accepted, and how each is verified.

A token's *unverified* `iss` picks the verifier; that verifier then checks the signature with
its own keys and algorithms, and `iss`, `aud` and `exp` again. A token naming an issuer no
verifier answers for is refused before any key is touched. Today there is one issuer:
Continuity itself (HS256 with the shared secret; `continuity token`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import jwt
from litestar.exceptions import NotAuthorizedException

from continuity.settings import BUILT_IN_ISSUER

BUILT_IN_ALGORITHM = "HS256"


class Verifier(Protocol):
    @property
    def issuer(self) -> str: ...

    async def claims(self, encoded: str, header: dict[str, Any]) -> dict[str, Any]:
        """The verified claims, or NotAuthorizedException."""


def _decode(
    encoded: str,
    key: str,
    algorithm: str,
    issuer: str,
    audience: str,
    require: Sequence[str],
) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            encoded,
            key,
            algorithms=[algorithm],
            issuer=issuer,
            audience=audience,
            options={"require": list(require), "enforce_minimum_key_length": True},
        )
    except jwt.PyJWTError as exc:
        # PyJWT's messages name the failed check ("Audience doesn't match", "Signature has
        # expired"), never a claim's value.
        raise NotAuthorizedException(f"the token was refused: {exc}") from None
    return claims


class BuiltInIssuer:
    """Tokens Continuity signs itself with its HS256 secret."""

    issuer = BUILT_IN_ISSUER

    def __init__(self, secret: str, audience: str) -> None:
        self._secret = secret
        self.audience = audience

    async def claims(self, encoded: str, header: dict[str, Any]) -> dict[str, Any]:
        return _decode(
            encoded,
            self._secret,
            BUILT_IN_ALGORITHM,
            self.issuer,
            self.audience,
            ("exp", "iat", "iss", "aud", "sub"),
        )


class Issuers:
    """Routes each token to the verifier of the issuer it names."""

    def __init__(self, verifiers: Sequence[Verifier]) -> None:
        self._by_issuer = {v.issuer: v for v in verifiers}
        if len(self._by_issuer) != len(verifiers):
            raise ValueError("two verifiers for one issuer")

    async def verify(self, encoded: str) -> dict[str, Any]:
        """The claims of a token whose signature, issuer, audience and expiry all check out."""
        try:
            header = jwt.get_unverified_header(encoded)
            unverified = jwt.decode(encoded, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise NotAuthorizedException("the bearer token is not a readable JWT") from None
        issuer = unverified.get("iss")
        verifier = self._by_issuer.get(issuer) if isinstance(issuer, str) else None
        if verifier is None:
            raise NotAuthorizedException("the token's issuer (iss) is not accepted")
        return await verifier.claims(encoded, header)
