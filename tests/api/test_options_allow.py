"""`OPTIONS` answers `Allow` with every method of the path (found by Schemathesis)."""

from __future__ import annotations

import httpx
import pytest


@pytest.mark.anyio
async def test_options_allows_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    answer = await client.options("/v1/me/cart/items/SKU-1")
    assert answer.status_code == 204
    assert set(answer.headers["allow"].split(", ")) == {"DELETE", "OPTIONS", "PATCH"}
