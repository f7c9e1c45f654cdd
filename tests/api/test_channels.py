"""X-Channel on a customer's device routes: the customer's own channels only."""

from __future__ import annotations

from uuid import uuid4

import httpx
import pytest

from tests.helpers import MUG, TokenFactory

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("channel", ["agent", "system"])
async def test_a_customer_cannot_act_on_the_agent_or_system_channel(
    client: httpx.AsyncClient, auth: TokenFactory, channel: str
) -> None:
    phone = auth(uuid4())
    response = await client.post(
        "/v1/me/cart/items", json=MUG, headers={**phone, "X-Channel": channel}
    )
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["field"] == "X-Channel"
    assert "X-Channel" in problem["detail"]
    assert (await client.get("/v1/me/cart", headers=phone)).status_code == 404
    session = (await client.get("/v1/me/session", headers=phone)).json()
    assert (session["cart"], session["devices"]) == (None, [])


async def test_a_later_change_on_the_agent_channel_writes_nothing(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    phone = auth(uuid4())
    assert (await client.post("/v1/me/cart/items", json=MUG, headers=phone)).status_code == 200
    refused = await client.post(
        "/v1/me/cart/checkout", headers={**phone, "X-Channel": "system", "If-Match": '"2"'}
    )
    assert refused.status_code == 403
    cart = (await client.get("/v1/me/cart", headers=phone)).json()
    assert (cart["status"], cart["version"]) == ("open", 2)


@pytest.mark.parametrize("channel", ["web", "app", "chat", "email", "sms", "phone", "store"])
async def test_a_customer_may_use_their_own_channels(
    client: httpx.AsyncClient, auth: TokenFactory, channel: str
) -> None:
    phone = auth(uuid4())
    response = await client.post(
        "/v1/me/cart/items", json=MUG, headers={**phone, "X-Channel": channel}
    )
    assert response.status_code == 200, response.text
    session = (await client.get("/v1/me/session", headers=phone)).json()
    assert session["devices"][0]["channel"] == channel


async def test_an_unknown_channel_is_a_400_naming_the_header(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    response = await client.post(
        "/v1/me/cart/items", json=MUG, headers={**auth(uuid4()), "X-Channel": "fax"}
    )
    assert response.status_code == 400
    assert response.json()["field"] == "X-Channel"


async def test_an_empty_channel_is_a_400_not_the_default(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    """Only a missing X-Channel means web; an empty one is no channel (found by Schemathesis)."""
    phone = auth(uuid4())
    response = await client.post("/v1/me/cart/items", json=MUG, headers={**phone, "X-Channel": ""})
    assert response.status_code == 400
    assert response.json()["field"] == "X-Channel"
    assert (await client.get("/v1/me/cart", headers=phone)).status_code == 404
