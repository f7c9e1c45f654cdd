"""Operator routes: liveness and readiness."""

from __future__ import annotations

from litestar import Response, get
from litestar.di import NamedDependency

from api.schemas import Health, Readiness
from continuity.runtime import Runtime


@get("/health", tags=["ops"], summary="Liveness and database reachability")
async def health(runtime: NamedDependency[Runtime]) -> Response[Health]:
    if not await runtime.database_reachable():
        return Response(Health("unavailable", "unreachable"), status_code=503)
    return Response(Health("ok", "ok"))


@get("/ready", tags=["ops"], summary="Ready for traffic: database reachable, schema up to date")
async def ready(runtime: NamedDependency[Runtime]) -> Response[Readiness]:
    if not await runtime.database_reachable():
        return Response(Readiness("unavailable", []), status_code=503)
    pending = await runtime.migrations_pending()
    if pending:
        return Response(Readiness("migrations pending", pending), status_code=503)
    return Response(Readiness("ready", []))
