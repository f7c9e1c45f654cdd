"""The Litestar application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig

from api.auth import jwt_auth
from api.cors import cors_config
from api.docs_ui import docs_asset, render_plugins
from api.log_config import ContinuityLogging
from api.problems import EXPECTED_ERRORS, fallback_handlers, problem_details_plugin
from api.rate_limits import rate_limit_config
from api.request_context import RequestContext
from api.routes.device import DeviceController
from api.routes.ops import health, metrics, ready
from continuity.metrics import Metrics
from continuity.runtime import Runtime, resolve_database, resolve_jwt_secret
from continuity.settings import Settings
from privacy.master_key import Keyring


def _runtime(state: State) -> Runtime:
    runtime: Runtime = state.runtime
    return runtime


def create_app(
    settings: Settings | None = None,
    *,
    database_url: str | None = None,
    keyring: Keyring | None = None,
) -> Litestar:
    """Build the app. The database is `database_url`, else the settings' URL, else an embedded
    PostgreSQL under the data dir; it is connected and migrated at startup."""
    settings = settings or Settings.from_env()
    auth = jwt_auth(resolve_jwt_secret(settings), settings.jwt_audience, settings.idp)
    measured = Metrics()
    limits = rate_limit_config(settings.rate_limit_per_minute, settings.trusted_proxies)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await auth.issuers.start()
        url, server = (database_url, None) if database_url else resolve_database(settings)
        runtime = await Runtime.open(settings, url, keyring, metrics=measured)
        app.state.runtime = runtime
        try:
            yield
        finally:
            await runtime.close()
            if server is not None:
                server.cleanup()

    app = Litestar(
        route_handlers=[DeviceController, health, ready, metrics, docs_asset],
        dependencies={"runtime": Provide(_runtime, sync_to_thread=False)},
        lifespan=[lifespan],
        on_app_init=[auth.on_app_init],
        cors_config=cors_config(settings.cors_origins),
        middleware=[limits.middleware] if limits else [],
        plugins=[problem_details_plugin()],
        exception_handlers=fallback_handlers(),
        logging_config=ContinuityLogging(
            level=settings.log_level,
            format=settings.log_format,
            log_exceptions="always",
            disable_stack_trace={400, 401, 403, 404, 405, 409, 410, 412, 422, *EXPECTED_ERRORS},
        ),
        openapi_config=OpenAPIConfig(
            title="Continuity",
            version="0.1.0",
            description="One continuous conversation across devices and channels.",
            path="/schema",
            render_plugins=render_plugins(),
        ),
    )
    app.asgi_handler = RequestContext(app.asgi_handler, measured)
    return app
