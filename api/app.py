"""The Litestar application factory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from litestar import Litestar, Request, Response
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig

from api.allow import complete_allow
from api.auth import DeviceTokens, jwt_auth
from api.body import ApiRequest
from api.console.cookies import in_console
from api.console.errors import error_page
from api.console.routes import console_routes, console_templates
from api.cors import Cors, cors_config
from api.docs_ui import docs_asset, render_plugins
from api.draining import on_stop_signal
from api.etags import NotModified, not_modified
from api.limits import MAX_BODY_BYTES
from api.log_config import ContinuityLogging
from api.openapi import document_lazily
from api.problems import handle, refuse_preflight
from api.rate_limits import rate_limit_config
from api.request_context import RequestContext
from api.routes.access_audit import AccessAuditController
from api.routes.activity import ActivityController
from api.routes.agent import AgentController
from api.routes.analytics import AnalyticsController
from api.routes.applications import MyApplicationsController
from api.routes.consents import MyConsentsController, PrivacyConsentsController
from api.routes.conversations import (
    AgentConversationsController,
    AgentIdentifiersController,
    MyConversationsController,
    MyIdentifiersController,
    ServiceController,
)
from api.routes.device import DeviceController
from api.routes.export import MyExportController, PrivacyExportController
from api.routes.live import LiveController
from api.routes.ops import health, metrics, ready, signing_key
from api.routes.privacy import MyErasureController, PrivacyController
from api.routes.sessions import MyDevicesController, SessionsController
from api.routes.sync import SyncController
from api.routes.timeline import AgentTimelineController, MyTimelineController
from continuity.collector import freeze_start_up
from continuity.metrics import Metrics
from continuity.runtime import Runtime, resolve_database, resolve_jwt_secret
from continuity.settings import Settings
from privacy.master_key import Keyring

RUNNERS_GRACE = 10.0
"""Seconds the async projections' runners and the expiry sweep get to finish at shutdown."""


def _not_modified(_: Request[Any, Any, Any], exc: NotModified) -> Response[None]:
    return not_modified(exc.etag)


def _answer_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """A problem for the API; a page for the console's pages, where the console is served."""
    if in_console(request.scope["path"]) and request.app.template_engine is not None:
        return error_page(request, exc)
    return handle(request, exc)


def _runtime(state: State) -> Runtime:
    runtime: Runtime = state.runtime
    return runtime


def create_app(
    settings: Settings | None = None,
    *,
    database_url: str | None = None,
    keyring: Keyring | None = None,
    build_stale: bool = True,
) -> Litestar:
    """Build the app. The database is `database_url`, else the settings' URL, else an embedded
    PostgreSQL under the data dir; it is connected and migrated at startup, and projections
    whose rows are stale are rebuilt then unless `build_stale` is False (a worker of
    `continuity run --workers N`, whose parent did it once for all)."""
    settings = settings or Settings.from_env()
    secret = resolve_jwt_secret(settings)
    auth = jwt_auth(secret, settings.jwt_audience, settings.idp)
    device_tokens = DeviceTokens(
        secret, settings.jwt_audience, timedelta(days=settings.device_token_days)
    )
    measured = Metrics()
    limits = rate_limit_config(settings.rate_limit_per_minute, settings.trusted_proxies)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await auth.issuers.start()
        url, server = (database_url, None) if database_url else resolve_database(settings)
        runtime = await Runtime.open(
            settings, url, keyring, build_stale=build_stale, metrics=measured
        )
        app.state.runtime = runtime
        stop_following = asyncio.Event()
        following = [
            asyncio.create_task(
                runtime.follow_async_projections(stop_following), name="continuity-projections"
            ),
            asyncio.create_task(
                runtime.sweep_idle_applications(stop_following), name="continuity-expiry"
            ),
            asyncio.create_task(
                runtime.erasures.keep_resuming(stop_following), name="continuity-erasures"
            ),
            asyncio.create_task(
                runtime.apply_retention(stop_following), name="continuity-retention"
            ),
        ]
        freeze_start_up()
        follower = None
        if measured.shared():
            measured.forget_dead_workers()
            follower = asyncio.create_task(
                measured.follow_pool(runtime.pool), name="continuity-pool-metrics"
            )
        try:
            with on_stop_signal(runtime.live.stop):  # open event streams would hold shutdown up
                yield
        finally:
            stop_following.set()
            await asyncio.wait(following, timeout=RUNNERS_GRACE)
            if follower is not None:
                follower.cancel()
                await asyncio.wait([follower])
            measured.leave()
            await runtime.close()
            if server is not None:
                server.cleanup()

    app = Litestar(
        route_handlers=[
            DeviceController,
            ActivityController,
            MyConsentsController,
            PrivacyConsentsController,
            AnalyticsController,
            SyncController,
            MyApplicationsController,
            AgentController,
            MyConversationsController,
            MyIdentifiersController,
            AgentConversationsController,
            AgentIdentifiersController,
            ServiceController,
            AgentTimelineController,
            MyTimelineController,
            LiveController,
            SessionsController,
            MyDevicesController,
            PrivacyExportController,
            MyExportController,
            AccessAuditController,
            PrivacyController,
            MyErasureController,
            health,
            ready,
            metrics,
            signing_key,
            docs_asset,
            *(console_routes(secret, settings.console_secure_cookies) if settings.console else ()),
        ],
        dependencies={
            "runtime": Provide(_runtime, sync_to_thread=False),
            "device_tokens": Provide(lambda: device_tokens, sync_to_thread=False),
            "issuers": Provide(lambda: auth.issuers, sync_to_thread=False),
        },
        lifespan=[lifespan],
        on_app_init=[auth.on_app_init],
        request_class=ApiRequest,
        request_max_body_size=MAX_BODY_BYTES,
        middleware=[limits.middleware] if limits else [],
        exception_handlers={Exception: _answer_error, NotModified: _not_modified},
        template_config=console_templates() if settings.console else None,
        # api.problems logs each error answered (4xx at INFO, 5xx at ERROR with a traceback).
        logging_config=ContinuityLogging(
            level=settings.log_level, format=settings.log_format, log_exceptions="never"
        ),
        openapi_config=OpenAPIConfig(
            title="Continuity",
            version="0.1.0",
            description="One continuous conversation across devices and channels.",
            path="/schema",
            render_plugins=render_plugins(),
        ),
    )
    complete_allow(app)
    document_lazily(app)
    cors = cors_config(settings.cors_origins)
    inner = Cors(app.asgi_handler, cors, refuse_preflight) if cors else app.asgi_handler
    app.asgi_handler = RequestContext(inner, measured)
    return app
