"""The console's routes, assets and templates, as the app registers them."""

from __future__ import annotations

from pathlib import Path

from litestar import Router
from litestar.datastructures import CacheControlHeader
from litestar.di import Provide
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template import TemplateConfig
from litestar.types import ControllerRouterHandler

from api.console.agent_pages import AgentPages
from api.console.analytics_pages import AnalyticsPages
from api.console.cookies import CONSOLE
from api.console.formatting import short, when, words
from api.console.live import CatchUp
from api.console.privacy_pages import PrivacyPages
from api.console.security import SECURITY_HEADERS, csrf_middleware
from api.console.sign_in import home, sign_in, sign_in_form, sign_out

HERE = Path(__file__).parent
ASSET_SECONDS = 3600


def console_routes(jwt_secret: str, secure_cookies: bool) -> list[ControllerRouterHandler]:
    catch_up = CatchUp()
    pages = Router(
        path="/",
        route_handlers=[
            sign_in_form,
            sign_in,
            sign_out,
            home,
            AgentPages,
            AnalyticsPages,
            PrivacyPages,
        ],
        middleware=[csrf_middleware(jwt_secret, secure_cookies)],
        dependencies={"catch_up": Provide(lambda: catch_up, sync_to_thread=False)},
        response_headers=SECURITY_HEADERS,
        include_in_schema=False,
    )
    assets = create_static_files_router(
        path=f"{CONSOLE}/static",
        directories=[HERE / "static"],
        name="console-static",
        include_in_schema=False,
        cache_control=CacheControlHeader(public=True, max_age=ASSET_SECONDS),
    )
    return [pages, assets]


def _filters(engine: JinjaTemplateEngine) -> None:
    engine.engine.filters.update(when=when, short=short, words=words)


def console_templates() -> TemplateConfig[JinjaTemplateEngine]:
    return TemplateConfig(
        directory=HERE / "templates", engine=JinjaTemplateEngine, engine_callback=_filters
    )
