"""The cart through HTTP: two devices of one customer, isolation, and clear 4xx problems."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import httpx
import pytest

from tests.helpers import MUG, TokenFactory

pytestmark = pytest.mark.anyio

TEA = {"sku": "TEA-7", "name": "Green tea", "unit_price": "4.20", "quantity": 3}


async def test_a_cart_written_on_one_device_resumes_on_another(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    customer = uuid4()
    phone, laptop = auth(customer, "phone"), auth(customer, "laptop")

    first = await client.post("/v1/me/cart/items", json=MUG, headers=phone)
    assert first.status_code == 200, first.text
    assert first.headers["etag"] == '"2"'
    second = await client.post("/v1/me/cart/items", json=TEA, headers=phone)
    assert second.headers["etag"] == '"3"'
    changed = await client.patch(
        "/v1/me/cart/items/MUG-1", json={"quantity": 2}, headers={**phone, "If-Match": '"3"'}
    )
    assert changed.status_code == 200, changed.text

    resumed = await client.get("/v1/me/session", headers=laptop)
    assert resumed.status_code == 200
    session = resumed.json()
    assert session["subject_id"] == str(customer)
    cart = session["cart"]
    assert cart["version"] == 4
    assert cart["status"] == "open"
    assert [(i["sku"], i["quantity"], i["unit_price"]) for i in cart["items"]] == [
        ("MUG-1", 2, "12.50"),
        ("TEA-7", 3, "4.20"),
    ]
    assert cart["total"] == "37.60"
    assert [d["device"] for d in session["devices"]] == ["phone"]

    on_laptop = await client.get("/v1/me/cart", headers=laptop)
    assert on_laptop.headers["etag"] == '"4"'
    assert on_laptop.json() == cart


async def test_a_stale_if_match_is_412_with_the_current_version(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    customer = uuid4()
    phone = auth(customer)
    await client.post("/v1/me/cart/items", json=MUG, headers=phone)
    await client.post("/v1/me/cart/items", json=TEA, headers=phone)
    stale = await client.patch(
        "/v1/me/cart/items/MUG-1", json={"quantity": 5}, headers={**phone, "If-Match": '"2"'}
    )
    assert stale.status_code == 412
    assert stale.headers["content-type"].startswith("application/problem+json")
    assert stale.headers["etag"] == '"3"'
    assert stale.json()["current_version"] == 3
    cart = (await client.get("/v1/me/cart", headers=phone)).json()
    assert cart["items"][0]["quantity"] == 1


async def test_a_retried_request_is_answered_not_repeated(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    customer = uuid4()
    key = str(uuid4())
    headers = {**auth(customer), "Idempotency-Key": key}
    first = await client.post("/v1/me/cart/items", json=MUG, headers=headers)
    again = await client.post("/v1/me/cart/items", json=MUG, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.json()["items"][0]["quantity"] == 1
    assert again.json()["version"] == first.json()["version"]
    reused = await client.post("/v1/me/cart/items", json=TEA, headers=headers)
    assert reused.status_code == 422
    assert reused.json()["field"] == "Idempotency-Key"


async def test_a_retry_after_checkout_is_still_answered_not_repeated(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    """An offline queue may replay an action long after the cart it went to was checked out."""
    phone = auth(uuid4())
    key = str(uuid4())
    first = await client.post(
        "/v1/me/cart/items", json=MUG, headers={**phone, "Idempotency-Key": key}
    )
    await client.post("/v1/me/cart/checkout", headers=phone)
    await client.post("/v1/me/cart/items", json=TEA, headers=phone)
    replay = await client.post(
        "/v1/me/cart/items", json=MUG, headers={**phone, "Idempotency-Key": key}
    )
    assert replay.status_code == 200, replay.text
    assert replay.json()["cart_id"] != first.json()["cart_id"]
    assert [i["sku"] for i in replay.json()["items"]] == ["TEA-7"]


async def test_another_customer_cannot_see_the_cart(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    alice, bob = uuid4(), uuid4()
    await client.post("/v1/me/cart/items", json=MUG, headers=auth(alice))
    theirs = await client.get("/v1/me/session", headers=auth(bob))
    assert theirs.status_code == 200
    assert theirs.json()["cart"] is None
    assert (await client.get("/v1/me/cart", headers=auth(bob))).status_code == 404
    removed = await client.delete("/v1/me/cart/items/MUG-1", headers=auth(bob))
    assert removed.status_code == 404
    mine = await client.get("/v1/me/cart", headers=auth(alice))
    assert mine.json()["items"][0]["sku"] == "MUG-1"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**MUG, "quantity": "two"}, "quantity"),
        ({**MUG, "unit_price": "cheap"}, "unit_price"),
        ({"name": "Blue mug", "unit_price": "1.00"}, "sku"),
        ({**MUG, "sku": ""}, "sku"),
        ({**MUG, "colour": "blue"}, "colour"),
    ],
)
async def test_bad_bodies_are_400_problems_naming_the_field(
    client: httpx.AsyncClient, auth: TokenFactory, body: dict[str, object], field: str
) -> None:
    response = await client.post("/v1/me/cart/items", json=body, headers=auth(uuid4()))
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == 400
    assert problem["field"] == field
    assert problem["errors"][0]["field"] == field
    assert problem["title"] == "Invalid request"


async def test_domain_rules_are_4xx_problems(client: httpx.AsyncClient, auth: TokenFactory) -> None:
    phone = auth(uuid4())
    zero = await client.post("/v1/me/cart/items", json={**MUG, "quantity": 0}, headers=phone)
    assert zero.status_code == 400, "the schema says a quantity is at least 1"
    assert zero.json()["field"] == "quantity"
    await client.post("/v1/me/cart/items", json=MUG, headers=phone)
    too_many = await client.post(
        "/v1/me/cart/items", json={**MUG, "quantity": 10_000}, headers=phone
    )
    assert too_many.status_code == 422
    assert too_many.json()["field"] == "quantity"
    unknown = await client.patch("/v1/me/cart/items/NOPE", json={"quantity": 1}, headers=phone)
    assert unknown.status_code == 404
    assert unknown.json()["field"] == "sku"
    done = await client.post("/v1/me/cart/checkout", headers=phone)
    assert done.json()["status"] == "checked_out"
    after = await client.patch("/v1/me/cart/items/MUG-1", json={"quantity": 3}, headers=phone)
    assert after.status_code == 409
    assert after.headers["content-type"].startswith("application/problem+json")
    fresh = await client.post("/v1/me/cart/items", json=TEA, headers=phone)
    assert fresh.status_code == 200
    assert fresh.json()["cart_id"] != done.json()["cart_id"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ],
)
async def test_bad_tokens_are_401_problems(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.get("/v1/me/session", headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_a_token_signed_with_another_secret_is_refused(client: httpx.AsyncClient) -> None:
    from datetime import timedelta

    from api.auth import issue_token

    forged = issue_token(
        "another-secret-" + "y" * 40, uuid4(), "customer", "phone", timedelta(hours=1)
    )
    response = await client.get("/v1/me/session", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401


async def test_an_agent_token_cannot_use_device_routes(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    response = await client.get("/v1/me/session", headers=auth(uuid4(), None, "agent"))
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_health_and_openapi_need_no_token(client: httpx.AsyncClient) -> None:
    health = await client.get("/health")
    assert health.json() == {"status": "ok", "database": "ok"}
    ready = await client.get("/ready")
    assert ready.json() == {"status": "ready", "pending_migrations": []}
    schema = await client.get("/schema/openapi.json")
    assert schema.status_code == 200
    assert "/v1/me/cart/items" in schema.json()["paths"]
    for ui in ("/schema", "/schema/swagger"):
        page = await client.get(ui)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")


async def test_devices_opening_the_cart_at_once_share_one_cart(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    customer = uuid4()
    items = [{**MUG, "sku": f"SKU-{n}"} for n in range(4)]
    answers = await asyncio.gather(
        *(
            client.post("/v1/me/cart/items", json=item, headers=auth(customer, f"device-{n}"))
            for n, item in enumerate(items)
        )
    )
    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    cart = (await client.get("/v1/me/cart", headers=auth(customer))).json()
    assert sorted(i["sku"] for i in cart["items"]) == [f"SKU-{n}" for n in range(4)]
    assert cart["version"] == 5
    assert len({a.json()["cart_id"] for a in answers}) == 1


async def test_a_request_sent_twice_at_once_is_recorded_once(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    headers = {**auth(uuid4()), "Idempotency-Key": str(uuid4())}
    answers = await asyncio.gather(
        *(client.post("/v1/me/cart/items", json=MUG, headers=headers) for _ in range(3))
    )
    assert [a.status_code for a in answers] == [200] * 3, [a.text for a in answers]
    cart = (await client.get("/v1/me/cart", headers=headers)).json()
    assert cart["items"][0]["quantity"] == 1
    assert cart["version"] == 2


async def test_an_idempotency_key_belongs_to_the_customer_who_sent_it(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    """Two customers' apps that happen to send the same key make two requests, not a reuse."""
    key = str(uuid4())
    first, second = uuid4(), uuid4()
    mine = await client.post(
        "/v1/me/cart/items", json=MUG, headers={**auth(first), "Idempotency-Key": key}
    )
    theirs = await client.post(
        "/v1/me/cart/items", json=TEA, headers={**auth(second), "Idempotency-Key": key}
    )
    assert (mine.status_code, theirs.status_code) == (200, 200), theirs.text
    assert [i["sku"] for i in mine.json()["items"]] == ["MUG-1"]
    assert [i["sku"] for i in theirs.json()["items"]] == ["TEA-7"]
    again = await client.post(
        "/v1/me/cart/items", json=TEA, headers={**auth(second), "Idempotency-Key": key}
    )
    assert again.status_code == 200
    assert again.json()["items"][0]["quantity"] == 3, "a retry was recorded twice"
    reused = await client.post(
        "/v1/me/cart/items", json=MUG, headers={**auth(second), "Idempotency-Key": key}
    )
    assert reused.status_code == 422
