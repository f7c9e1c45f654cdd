"""If-None-Match on the reads that carry an ETag: 304 while the client's copy is current."""

from __future__ import annotations

from uuid import uuid4

import httpx
import pytest

from tests.helpers import MUG, TokenFactory

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("route", ["/v1/me/cart", "/v1/me/session"])
async def test_an_unchanged_read_is_304_and_a_changed_one_200(
    client: httpx.AsyncClient, auth: TokenFactory, route: str
) -> None:
    phone = auth(uuid4())
    await client.post("/v1/me/cart/items", json=MUG, headers=phone)
    first = await client.get(route, headers=phone)
    etag = first.headers["etag"]
    assert etag.startswith('"')
    assert not etag.startswith("W/")

    for held in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        same = await client.get(route, headers={**phone, "If-None-Match": held})
        assert same.status_code == 304, (held, same.text)
        assert same.content == b""
        assert same.headers["etag"] == etag

    await client.post("/v1/me/cart/items", json={**MUG, "sku": "TEA"}, headers=phone)
    changed = await client.get(route, headers={**phone, "If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert [i["sku"] for i in (changed.json().get("cart") or changed.json())["items"]] == [
        "MUG-1",
        "TEA",
    ]


async def test_the_cart_etag_is_the_version_if_match_takes(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    phone = auth(uuid4())
    await client.post("/v1/me/cart/items", json=MUG, headers=phone)
    etag = (await client.get("/v1/me/cart", headers=phone)).headers["etag"]
    assert etag == '"2"'
    changed = await client.patch(
        "/v1/me/cart/items/MUG-1", json={"quantity": 2}, headers={**phone, "If-Match": etag}
    )
    assert changed.status_code == 200


async def test_a_malformed_if_none_match_is_400(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    phone = auth(uuid4())
    await client.post("/v1/me/cart/items", json=MUG, headers=phone)
    response = await client.get("/v1/me/cart", headers={**phone, "If-None-Match": "2"})
    assert response.status_code == 400
    assert response.json()["field"] == "If-None-Match"


async def test_no_cart_is_404_whatever_if_none_match_says(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    response = await client.get("/v1/me/cart", headers={**auth(uuid4()), "If-None-Match": "*"})
    assert response.status_code == 404
