"""The API docs UI at `/schema` (and `/schema/swagger`), served whole by the app itself.

Litestar's render plugins load their JavaScript and CSS from a CDN at view time, so the docs
page is blank offline, behind a proxy that blocks CDNs, or under a strict CSP. Swagger UI comes
instead from the `swagger-ui-bundle-v2` package (the maintained fork of connexion's
`swagger-ui-bundle`, Swagger UI 5, which reads OpenAPI 3.1), and the few files the page needs
are served from `/schema/assets/` by a route that serves only those.
"""

from __future__ import annotations

from pathlib import Path

from litestar import get
from litestar.exceptions import NotFoundException
from litestar.openapi.plugins import OpenAPIRenderPlugin, SwaggerRenderPlugin
from litestar.params import FromPath
from litestar.response import File
from swagger_ui_bundle import swagger_ui_path

ASSETS = "/schema/assets"
FILES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui-standalone-preset.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}
"""What the page loads; nothing else of the package (its demo page points at a remote spec)."""

CACHE_SECONDS = 24 * 3600


@get(f"{ASSETS}/{{name:str}}", include_in_schema=False, sync_to_thread=False)
def docs_asset(name: FromPath[str]) -> File:
    media_type = FILES.get(name)
    if media_type is None:
        raise NotFoundException("no such docs asset")
    return File(
        Path(swagger_ui_path) / name,
        media_type=media_type,
        content_disposition_type="inline",
        headers={"Cache-Control": f"public, max-age={CACHE_SECONDS}"},
    )


def render_plugins() -> list[OpenAPIRenderPlugin]:
    """Swagger UI at `/schema` (the first plugin is the default) and `/schema/swagger`, with
    every asset from this app."""
    return [
        SwaggerRenderPlugin(
            path="/swagger",
            js_url=f"{ASSETS}/swagger-ui-bundle.js",
            css_url=f"{ASSETS}/swagger-ui.css",
            standalone_preset_js_url=f"{ASSETS}/swagger-ui-standalone-preset.js",
            favicon=f"<link rel='icon' type='image/png' href='{ASSETS}/favicon-32x32.png'>",
        )
    ]
