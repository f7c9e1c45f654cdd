"""Input that used to be a 500 is a clear 4xx problem, and nothing of it is stored."""

from __future__ import annotations

from uuid import uuid4

import httpx
import pytest

from api.problems import PROBLEM_BASE
from tests.helpers import MUG, TokenFactory

pytestmark = pytest.mark.anyio

JSON = {"Content-Type": "application/json"}


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, object] = response.json()
    assert body["status"] == status
    assert body["type"] == PROBLEM_BASE + slug
    assert isinstance(body["title"], str)
    assert body["title"]
    return body


async def a_cart(client: httpx.AsyncClient, auth: TokenFactory) -> dict[str, str]:
    phone = auth(uuid4())
    assert (await client.post("/v1/me/cart/items", json=MUG, headers=phone)).status_code == 200
    return phone


@pytest.mark.parametrize(
    "if_match",
    ['"' + "9" * 4301 + '"', "9" * 4301, '"²"', "²", '"٣"', '"+2"', '"02"', '"2", "3"', '""'],
    ids=[
        "4301 digits",
        "4301 bare digits",
        "superscript",
        "bare superscript",
        "arabic digit",
        "sign",
        "leading zero",
        "a list",
        "empty",
    ],
)
async def test_if_match_is_parsed_strictly(
    client: httpx.AsyncClient, auth: TokenFactory, if_match: str
) -> None:
    phone = await a_cart(client, auth)
    # As a client sends it: latin-1 where it can be (servers read header bytes as latin-1).
    value = if_match.encode("latin-1") if if_match.isascii() or "²" in if_match else None
    raw = [(k.encode(), v.encode()) for k, v in phone.items()]
    raw.append((b"If-Match", value if value is not None else if_match.encode()))
    response = await client.patch("/v1/me/cart/items/MUG-1", json={"quantity": 2}, headers=raw)
    body = assert_problem(response, 400, "invalid-request")
    assert body["field"] == "If-Match"
    cart = (await client.get("/v1/me/cart", headers=phone)).json()
    assert cart["items"][0]["quantity"] == 1


async def test_a_weak_if_match_is_refused_for_writes(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    """RFC 9110 13.1.1: If-Match compares strongly, and a weak tag never matches."""
    phone = await a_cart(client, auth)
    response = await client.patch(
        "/v1/me/cart/items/MUG-1", json={"quantity": 2}, headers={**phone, "If-Match": 'W/"2"'}
    )
    body = assert_problem(response, 412, "weak-etag")
    assert body["field"] == "If-Match"
    assert "weak" in str(body["detail"])
    strong = await client.patch(
        "/v1/me/cart/items/MUG-1", json={"quantity": 2}, headers={**phone, "If-Match": '"2"'}
    )
    assert strong.status_code == 200, strong.text


async def test_json_nested_ten_thousand_deep_is_a_400(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    phone = auth(uuid4())
    deep = b"[" * 10_000 + b"]" * 10_000
    response = await client.post("/v1/me/cart/items", content=deep, headers={**phone, **JSON})
    assert_problem(response, 400, "malformed-body")
    hidden = b'{"colour": ' + b"[" * 10_000 + b"]" * 10_000 + b', "sku": "MUG-1"}'
    response = await client.post("/v1/me/cart/items", content=hidden, headers={**phone, **JSON})
    assert_problem(response, 400, "malformed-body")


async def test_brackets_inside_strings_are_not_nesting(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    name = "[[[[[[[[[[{{{{{{{{{{ mug"
    response = await client.post(
        "/v1/me/cart/items", json={**MUG, "name": name}, headers=auth(uuid4())
    )
    assert response.status_code == 200, response.text
    assert response.json()["items"][0]["name"] == name


@pytest.mark.parametrize(
    "body",
    [
        b'{"sku": "MUG-1", "name": "Blue \xff mug", "unit_price": "1.00"}',
        b'{"sku": "MUG-1", "name": "Blue \xed\xa0\x80 mug", "unit_price": "1.00"}',
        b'{"sku": "MUG-1", "name": "Blue mug", "unit_price": "1.00", "\xc3": 1}',
    ],
    ids=["invalid byte", "surrogate", "truncated sequence in a key"],
)
async def test_a_body_that_is_not_utf8_is_a_400(
    client: httpx.AsyncClient, auth: TokenFactory, body: bytes
) -> None:
    phone = auth(uuid4())
    response = await client.post("/v1/me/cart/items", content=body, headers={**phone, **JSON})
    problem = assert_problem(response, 400, "malformed-body")
    assert "UTF-8" in str(problem["detail"])
    assert (await client.get("/v1/me/cart", headers=phone)).status_code == 404


@pytest.mark.parametrize("body", [b"", b"{", b'{"sku": "MUG-1",}', b"null", b"NaN"], ids=repr)
async def test_a_body_that_is_not_json_is_a_400(
    client: httpx.AsyncClient, auth: TokenFactory, body: bytes
) -> None:
    response = await client.post(
        "/v1/me/cart/items", content=body, headers={**auth(uuid4()), **JSON}
    )
    assert response.status_code == 400, response.text
    assert response.json()["type"] in {
        PROBLEM_BASE + "malformed-body",
        PROBLEM_BASE + "invalid-request",
    }


@pytest.mark.parametrize("price", ["1E+1000000", "1e3", "-0", "Infinity", "NaN", "0x10"])
async def test_prices_that_overflowed_the_fold_are_400(
    client: httpx.AsyncClient, auth: TokenFactory, price: str
) -> None:
    phone = auth(uuid4())
    response = await client.post(
        "/v1/me/cart/items", json={**MUG, "unit_price": price}, headers=phone
    )
    body = assert_problem(response, 400, "invalid-request")
    assert body["field"] == "unit_price"
    assert (await client.get("/v1/me/session", headers=phone)).status_code == 200
