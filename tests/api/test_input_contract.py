"""What a body may hold is exactly what the schema says: strict types, bounded strings, money in
a currency at its minor unit, JSON only, and limits on size and count."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import httpx
import pytest
from litestar import Litestar

from aggregates.cart import MAX_LINES
from api.limits import MAX_BODY_BYTES
from api.problems import PROBLEM_BASE
from continuity.settings import Settings, SettingsError
from privacy.master_key import Keyring
from tests.helpers import MUG, SECRET, TokenFactory, serve

pytestmark = pytest.mark.anyio

ITEMS = "/v1/me/cart/items"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"quantity": "2"}, "quantity"),
        ({"quantity": 2.0}, "quantity"),
        ({"quantity": True}, "quantity"),
        ({"quantity": 10_001}, "quantity"),
        ({"unit_price": "1_000"}, "unit_price"),
        ({"unit_price": " 1"}, "unit_price"),
        ({"unit_price": "1 "}, "unit_price"),
        ({"unit_price": "+1"}, "unit_price"),
        ({"unit_price": "01.00"}, "unit_price"),
        ({"unit_price": "1."}, "unit_price"),
        ({"unit_price": ".5"}, "unit_price"),
        ({"unit_price": 12.5}, "unit_price"),
        ({"unit_price": "1000000000000"}, "unit_price"),
        ({"unit_price": "9" * 5_000_000}, None),
        ({"sku": "R-4\n"}, "sku"),
        ({"sku": "R-4\r"}, "sku"),
        ({"sku": "-R4"}, "sku"),
        ({"sku": "R" * 65}, "sku"),
        ({"name": "Blue\nmug"}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": ""}, "name"),
        ({"currency": "eur"}, "currency"),
        ({"currency": "EUR\n"}, "currency"),
        ({"currency": None}, "currency"),
    ],
    ids=repr,
)
async def test_loose_input_is_refused_before_it_is_stored(
    client: httpx.AsyncClient, auth: TokenFactory, change: dict[str, Any], field: str | None
) -> None:
    phone = auth(uuid4())
    response = await client.post(ITEMS, json={**MUG, **change}, headers=phone)
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    if field is not None:
        assert response.status_code == 400
        assert response.json()["field"] == field
    else:
        assert response.status_code == 413
    assert (await client.get("/v1/me/cart", headers=phone)).status_code == 404


async def test_a_sku_in_the_path_is_held_to_the_same_pattern(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    phone = auth(uuid4())
    await client.post(ITEMS, json=MUG, headers=phone)
    response = await client.patch(f"{ITEMS}/MUG-1%0A", json={"quantity": 2}, headers=phone)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == "sku"


@pytest.mark.parametrize(
    ("currency", "price", "status", "stored"),
    [
        ("EUR", "1.005", 422, None),
        ("USD", "1.005", 422, None),
        ("EUR", "12.5", 200, "12.50"),
        ("EUR", "0", 200, "0.00"),
        ("JPY", "12.5", 422, None),
        ("JPY", "1200", 200, "1200"),
        ("JPY", "1200.00", 200, "1200"),
        ("KWD", "1.005", 200, "1.005"),
        ("EUR", "999999999999.99", 200, "999999999999.99"),
    ],
)
async def test_money_is_at_most_the_currency_minor_unit(
    client: httpx.AsyncClient,
    auth: TokenFactory,
    currency: str,
    price: str,
    status: int,
    stored: str | None,
) -> None:
    phone = auth(uuid4())
    body = {**MUG, "unit_price": price, "currency": currency, "quantity": 3}
    response = await client.post(ITEMS, json=body, headers=phone)
    assert response.status_code == status, response.text
    if stored is None:
        assert response.json()["type"] == PROBLEM_BASE + "invalid-value"
        assert response.json()["field"] == "unit_price"
        return
    cart = response.json()
    assert cart["currency"] == currency
    assert cart["items"][0]["unit_price"] == stored
    resumed = (await client.get("/v1/me/session", headers=phone)).json()["cart"]
    assert resumed == cart


async def test_totals_are_rounded_to_the_currency(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    phone = auth(uuid4())
    await client.post(ITEMS, json={**MUG, "unit_price": "12.5", "quantity": 3}, headers=phone)
    cart = (
        await client.post(ITEMS, json={**MUG, "sku": "PEN", "unit_price": "0.1"}, headers=phone)
    ).json()
    assert cart["currency"] == "EUR", "the configured default"
    assert [i["line_total"] for i in cart["items"]] == ["37.50", "0.10"]
    assert cart["total"] == "37.60"


async def test_a_cart_keeps_its_currency(client: httpx.AsyncClient, auth: TokenFactory) -> None:
    phone = auth(uuid4())
    first = await client.post(ITEMS, json={**MUG, "currency": "USD"}, headers=phone)
    assert first.json()["currency"] == "USD"
    same = await client.post(ITEMS, json={**MUG, "sku": "A", "currency": "USD"}, headers=phone)
    assert same.status_code == 200
    implied = await client.post(ITEMS, json={**MUG, "sku": "B"}, headers=phone)
    assert implied.json()["currency"] == "USD"
    other = await client.post(ITEMS, json={**MUG, "sku": "C", "currency": "EUR"}, headers=phone)
    assert other.status_code == 422
    assert other.json()["field"] == "currency"
    unknown = await client.post(ITEMS, json={**MUG, "currency": "XTS"}, headers=auth(uuid4()))
    assert unknown.status_code == 422
    assert unknown.json()["field"] == "currency"


@pytest.fixture
async def dollar_client(
    database_url: str, schema: str, keyring: Keyring
) -> AsyncIterator[httpx.AsyncClient]:
    """The app configured with CONTINUITY_CURRENCY=USD."""
    currency = Settings.from_env({"CONTINUITY_CURRENCY": "USD"}).currency
    settings = Settings(database_schema=schema, jwt_secret=SECRET, currency=currency)
    async with serve(settings, database_url, keyring) as (_, client):
        yield client


async def test_the_default_currency_is_configured(
    dollar_client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    cart = (await dollar_client.post(ITEMS, json=MUG, headers=auth(uuid4()))).json()
    assert cart["currency"] == "USD"


@pytest.mark.parametrize("value", ["usd", "XTS", "DOLLARS", "EU"])
def test_an_unknown_default_currency_stops_the_start(value: str) -> None:
    with pytest.raises(SettingsError, match="CONTINUITY_CURRENCY"):
        Settings.from_env({"CONTINUITY_CURRENCY": value})


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/xml", "application/x-www-form-urlencoded", "json"],
)
async def test_bodies_must_be_json(
    client: httpx.AsyncClient, auth: TokenFactory, content_type: str | None
) -> None:
    phone = auth(uuid4())
    body = b'{"sku": "MUG-1", "name": "Blue mug", "unit_price": "12.50"}'
    headers = {**phone, **({"Content-Type": content_type} if content_type else {})}
    response = await client.post(ITEMS, content=body, headers=headers)
    assert response.status_code == 415, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"] == PROBLEM_BASE + "unsupported-media-type"
    assert (await client.get("/v1/me/cart", headers=phone)).status_code == 404


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "application/vnd.a+json"],
)
async def test_json_media_types_are_accepted(
    client: httpx.AsyncClient, auth: TokenFactory, content_type: str
) -> None:
    body = b'{"sku": "MUG-1", "name": "Blue mug", "unit_price": "12.50"}'
    headers = {**auth(uuid4()), "Content-Type": content_type}
    response = await client.post(ITEMS, content=body, headers=headers)
    assert response.status_code == 200, response.text


async def test_a_body_over_the_limit_is_413(client: httpx.AsyncClient, auth: TokenFactory) -> None:
    body = {**MUG, "name": "x" * MAX_BODY_BYTES}
    response = await client.post(ITEMS, json=body, headers=auth(uuid4()))
    assert response.status_code == 413
    assert response.json()["type"] == PROBLEM_BASE + "body-too-large"


async def test_a_cart_holds_a_bounded_number_of_items(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    phone = auth(uuid4())
    for n in range(MAX_LINES):
        added = await client.post(ITEMS, json={**MUG, "sku": f"SKU-{n}"}, headers=phone)
        assert added.status_code == 200, added.text
    more = await client.post(ITEMS, json={**MUG, "sku": "ONE-MORE"}, headers=phone)
    assert more.status_code == 422
    assert more.json()["type"] == PROBLEM_BASE + "domain-rule"
    again = await client.post(ITEMS, json={**MUG, "sku": "SKU-0"}, headers=phone)
    assert again.status_code == 200, "more of an item already in the cart is not another item"


async def test_the_schema_says_what_is_accepted(app: Litestar) -> None:
    schema = app.openapi_schema.to_schema()
    add_item = schema["components"]["schemas"]["AddItem"]
    props = add_item["properties"]
    assert props["unit_price"]["type"] == "string"
    assert props["unit_price"]["pattern"].startswith("^(0|[1-9]")
    assert props["quantity"]["minimum"] == 1
    assert props["quantity"]["maximum"] == 10_000
    assert props["sku"]["maxLength"] == 64
    assert "pattern" in props["sku"]
    assert props["name"]["maxLength"] == 200
    assert props["currency"]["pattern"].startswith("^[A-Z]{3}")
    assert set(add_item["required"]) == {"sku", "name", "unit_price"}


@pytest.mark.parametrize("name", ["colour", ""])
async def test_an_unknown_field_is_named_even_when_its_name_is_empty(
    client: httpx.AsyncClient, auth: TokenFactory, name: str
) -> None:
    """Schemathesis sent `{"": false, "quantity": 3}`: the problem named the handler's parameter
    (`data`) instead of the field, whose name is the empty string."""
    phone = auth(uuid4())
    added = await client.post(ITEMS, json={**MUG, name: 1}, headers=phone)
    changed = await client.patch(f"{ITEMS}/MUG-1", json={"quantity": 3, name: 1}, headers=phone)
    for response in (added, changed):
        assert response.status_code == 400, response.text
        assert response.json()["field"] == name
