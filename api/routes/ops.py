"""Operator routes: liveness, readiness and metrics. None of them needs a token."""

from __future__ import annotations

from litestar import Response, get
from litestar.di import NamedDependency

from api.auth import NO_TOKEN
from api.schemas import Health, Readiness
from continuity.metrics import CONTENT_TYPE
from continuity.runtime import Runtime


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
