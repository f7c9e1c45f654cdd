"""Operator routes: liveness, readiness, metrics and the certificates' public key. None of them
needs a token."""

from __future__ import annotations

import msgspec
from litestar import Response, get
from litestar.di import NamedDependency

from api.auth import NO_TOKEN
from api.schemas import Health, Readiness
from continuity.metrics import CONTENT_TYPE
from continuity.runtime import Runtime
from privacy.certificates import CERTIFICATE_KEY


@get("/health", tags=["ops"], summary="Liveness and database reachability", security=NO_TOKEN)
async def health(runtime: NamedDependency[Runtime]) -> Response[Health]:
    if not await runtime.database_reachable():
        return Response(Health("unavailable", "unreachable"), status_code=503)
    return Response(Health("ok", "ok"))


@get(
    "/ready",
    tags=["ops"],
    summary="Ready for traffic: database reachable, schema up to date",
    security=NO_TOKEN,
)
async def ready(runtime: NamedDependency[Runtime]) -> Response[Readiness]:
    if not await runtime.database_reachable():
        return Response(Readiness("unavailable", []), status_code=503)
    pending = await runtime.migrations_pending()
    if pending:
        return Response(Readiness("migrations pending", pending), status_code=503)
    return Response(Readiness("ready", []))


@get(
    "/metrics",
    tags=["ops"],
    summary="Prometheus metrics: requests, appends, pool usage, projection lag",
    description="The Prometheus text exposition format. Labels hold no personal data.",
    media_type=CONTENT_TYPE,
    security=NO_TOKEN,
)
async def metrics(runtime: NamedDependency[Runtime]) -> Response[bytes]:
    await runtime.metrics.refresh(runtime.pool, runtime.projections)
    # The content type in full (its version tells Prometheus the format), not as a media type
    # Litestar would add a second charset to.
    return Response(runtime.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})


class SigningKey(msgspec.Struct):
    """The public key erasure certificates are signed with: verify one offline with
    `continuity certificate verify FILE --public-key KEY.pem` (docs/privacy.md)."""

    algorithm: str
    key_id: str
    """What a certificate's `signature.key_id` names."""
    public_key_pem: str


@get(
    "/.well-known/continuity-signing-key",
    tags=["ops"],
    summary="The public key that signs erasure certificates",
    security=NO_TOKEN,
)
async def signing_key(runtime: NamedDependency[Runtime]) -> SigningKey:
    signer = await runtime.vault.signer(CERTIFICATE_KEY)
    return SigningKey(signer.algorithm, signer.key_id, signer.public_key_pem())
