"""The docs UI works offline: the page and everything it loads come from the app itself."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx
import pytest


class References(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [v for k, v in attrs if k in {"src", "href"} and v]


@pytest.mark.anyio
@pytest.mark.parametrize("page", ["/schema", "/schema/swagger"])
async def test_the_docs_page_and_its_assets_come_from_the_app(
    client: httpx.AsyncClient, page: str
) -> None:
    response = await client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    found = References()
    found.feed(response.text)
    assert len(found.urls) >= 4, found.urls  # the bundle, the preset, the CSS, the icon
    external = [u for u in found.urls if re.match(r"(https?:)?//", u)]
    assert external == [], external
    assert "cdn.jsdelivr" not in response.text
    for url in found.urls:
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 500, url
        if url.endswith(".css"):
            assert not re.search(r"url\(\s*['\"]?(https?:)?//", asset.text)
    assert "SwaggerUIBundle" in response.text


@pytest.mark.anyio
async def test_only_the_pages_assets_are_served(client: httpx.AsyncClient) -> None:
    for name in ["index.html", "swagger-initializer.js", "../__init__.py", "%2e%2e%2fLICENSE"]:
        assert (await client.get(f"/schema/assets/{name}")).status_code == 404, name
