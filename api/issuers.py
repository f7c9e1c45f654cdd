"""Which bearer tokens are accepted, and how each is verified.

Two issuers: Continuity itself (HS256 with the shared secret; `continuity token`, for
development) and optionally an external identity provider (its public keys: a JWKS URL or one
PEM key; RS256, ES256 or EdDSA). A token's *unverified* `iss` only picks the verifier; that
verifier then checks the signature with its own keys and algorithms, and `iss`, `aud` and `exp`
again. So an HS256 token claiming the IdP's issuer is refused (the IdP accepts no HS256, and
its public key is never used as an HMAC secret), and a token naming any other issuer is
refused before any key is touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import jwt
from jwt import PyJWK
from litestar.exceptions import NotAuthorizedException

from api.jwks import JwksKeys
from api.verified_tokens import VerifiedTokens
from continuity.identity_provider import IdentityProvider, IdpPublicKey, load_public_key
from continuity.settings import BUILT_IN_ISSUER

BUILT_IN_ALGORITHM = "HS256"


class TokenExpired(NotAuthorizedException):
    """The token checked out but for its `exp`: the client should get a new one, not give up."""


class Verifier(Protocol):
    @property
    def issuer(self) -> str: ...

    async def start(self) -> None:
        """Get ready before serving (fetch keys)."""

    async def claims(self, encoded: str, header: dict[str, Any]) -> dict[str, Any]:
        """The verified claims, or NotAuthorizedException."""


def _decode(
    encoded: str,
    key: str | IdpPublicKey | PyJWK,
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
    except jwt.ExpiredSignatureError:
        raise TokenExpired("the token expired") from None
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

    async def start(self) -> None:
        return None

    async def claims(self, encoded: str, header: dict[str, Any]) -> dict[str, Any]:
        return _decode(
            encoded,
            self._secret,
            BUILT_IN_ALGORITHM,
            self.issuer,
            self.audience,
            ("exp", "iat", "iss", "aud", "sub"),
        )


class StaticKey:
    """One public key, configured as PEM text: no `kid` needed."""

    def __init__(self, pem: str) -> None:
        self.key, self.algorithm = load_public_key(pem)


class IdentityProviderIssuer:
    """Tokens an external identity provider signs with its private key."""

    def __init__(self, provider: IdentityProvider) -> None:
        self.provider = provider
        self.keys: StaticKey | JwksKeys
        if provider.public_key is not None:
            self.keys = StaticKey(provider.public_key)
        elif provider.jwks_url is not None:
            self.keys = JwksKeys(provider.jwks_url, provider.algorithms)
        else:
            raise ValueError("an identity provider needs a JWKS URL or a public key")

    @property
    def issuer(self) -> str:
        return self.provider.issuer

    async def start(self) -> None:
        if isinstance(self.keys, JwksKeys):
            await self.keys.refresh()

    async def claims(self, encoded: str, header: dict[str, Any]) -> dict[str, Any]:
        algorithm = header.get("alg")
        if algorithm not in self.provider.algorithms:
            raise NotAuthorizedException(
                "the identity provider's tokens must be signed with "
                + ", ".join(self.provider.algorithms)
            )
        key = await self._key(header, algorithm)
        return _decode(
            encoded,
            key,
            algorithm,
            self.provider.issuer,
            self.provider.audience,
            ("exp", "iss", "aud", "sub"),
        )

    async def _key(self, header: dict[str, Any], algorithm: str) -> IdpPublicKey | PyJWK:
        if isinstance(self.keys, StaticKey):
            if algorithm != self.keys.algorithm:
                raise NotAuthorizedException(
                    f"the identity provider's key is for {self.keys.algorithm}"
                )
            return self.keys.key
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise NotAuthorizedException("a token from the identity provider must name its kid")
        found = await self.keys.get(kid)
        if found is None:
            raise NotAuthorizedException(
                "the token's kid is not among the identity provider's keys"
            )
        if found.algorithm_name != algorithm:
            raise NotAuthorizedException(f"the key named by kid is for {found.algorithm_name}")
        return found


class Issuers:
    """Routes each token to the verifier of the issuer it names."""

    def __init__(
        self, verifiers: Sequence[Verifier], verified: VerifiedTokens | None = None
    ) -> None:
        self._by_issuer = {v.issuer: v for v in verifiers}
        if len(self._by_issuer) != len(verifiers):
            raise ValueError("two verifiers for one issuer")
        self.verified = verified or VerifiedTokens()

    async def start(self) -> None:
        for verifier in self._by_issuer.values():
            await verifier.start()

    async def verify(self, encoded: str) -> dict[str, Any]:
        """The claims of a token whose signature, issuer, audience and expiry all check out
        (recently verified ones from `verified`)."""
        known = self.verified.get(encoded)
        if known is not None:
            return known
        try:
            header = jwt.get_unverified_header(encoded)
            unverified = jwt.decode(encoded, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise NotAuthorizedException("the bearer token is not a readable JWT") from None
        issuer = unverified.get("iss")
        verifier = self._by_issuer.get(issuer) if isinstance(issuer, str) else None
        if verifier is None:
            raise NotAuthorizedException("the token's issuer (iss) is not accepted")
        claims = await verifier.claims(encoded, header)
        self.verified.put(encoded, claims)
        return claims
