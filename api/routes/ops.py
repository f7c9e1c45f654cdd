"""Operator routes: liveness and readiness."""

from __future__ import annotations

import asyncpg
from litestar import Response, get
from litestar.di import NamedDependency

from api.schemas import Health
from continuity.runtime import Runtime


@get("/health", tags=["ops"], summary="Liveness and database reachability")
async def health(runtime: NamedDependency[Runtime]) -> Response[Health]:
    try:
        await runtime.pool.fetchval("SELECT 1")
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return Response(Health("unavailable", "unreachable"), status_code=503)
    return Response(Health("ok", "ok"))
