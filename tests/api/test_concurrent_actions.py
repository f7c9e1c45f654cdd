"""Concurrent actions of one customer: commuting ones all succeed, none is lost."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import httpx
import pytest

from tests.helpers import MUG, TokenFactory

pytestmark = pytest.mark.anyio


async def test_twenty_concurrent_adds_of_different_items_all_succeed(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    customer = uuid4()
    devices = [auth(customer, f"device-{n % 3}") for n in range(20)]
    await client.post("/v1/me/cart/items", json=MUG, headers=devices[0])
    answers = await asyncio.gather(
        *(
            client.post("/v1/me/cart/items", json={**MUG, "sku": f"SKU-{n}"}, headers=headers)
            for n, headers in enumerate(devices)
        )
    )
    assert [a.status_code for a in answers] == [200] * 20, [a.text for a in answers]
    cart = (await client.get("/v1/me/cart", headers=devices[0])).json()
    assert sorted(i["sku"] for i in cart["items"]) == sorted(
        ["MUG-1", *(f"SKU-{n}" for n in range(20))]
    )
    assert cart["version"] == 22
    assert sorted(a.json()["version"] for a in answers) == list(range(3, 23))
