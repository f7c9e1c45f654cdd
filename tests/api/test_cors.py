"""OPTIONS and CORS: preflights need no token, only configured origins get CORS headers, and
OPTIONS never answers 500 or leaks an internal message, with CORS configured or not."""

from __future__ import annotations

from uuid import uuid4

import httpx
import pytest

from tests.conftest import ClientFactory
from tests.helpers import TokenFactory

APP = "https://app.example.com"
DEVICE_ROUTES = [
    "/v1/me/session",
    "/v1/me/cart",
    "/v1/me/cart/items",
    "/v1/me/cart/items/MUG-1",
    "/v1/me/cart/checkout",
]


def preflight(origin: str, method: str = "PATCH") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type, if-match, idempotency-key",
    }


def listed(value: str) -> set[str]:
    return {part.strip().lower() for part in value.split(",")}


def assert_no_leak(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    assert "AuthMiddleware" not in response.text
    assert "scope" not in response.text


@pytest.mark.anyio
@pytest.mark.parametrize("path", DEVICE_ROUTES)
async def test_options_without_cors_is_never_a_500(client: httpx.AsyncClient, path: str) -> None:
    plain = await client.options(path)
    assert_no_leak(plain)
    assert plain.status_code == 204
    assert "OPTIONS" in plain.headers["allow"]

    browser = await client.options(path, headers=preflight(APP))
    assert_no_leak(browser)
    assert "access-control-allow-origin" not in browser.headers


@pytest.mark.anyio
async def test_head_without_a_token_is_never_a_500(client: httpx.AsyncClient) -> None:
    response = await client.head("/v1/me/session")
    assert_no_leak(response)


@pytest.mark.anyio
@pytest.mark.parametrize("path", DEVICE_ROUTES)
async def test_a_configured_origin_gets_its_preflight_answered_without_a_token(
    serve: ClientFactory, path: str
) -> None:
    async with serve(cors_origins=(APP,)) as client:
        response = await client.options(path, headers=preflight(APP))
    assert response.status_code == 204, response.text
    assert response.headers["access-control-allow-origin"] == APP
    allowed = listed(response.headers["access-control-allow-methods"])
    assert {"get", "post", "patch", "delete"} <= allowed
    headers = listed(response.headers["access-control-allow-headers"])
    assert {"authorization", "content-type", "if-match", "idempotency-key"} <= headers
    assert int(response.headers["access-control-max-age"]) > 0


@pytest.mark.anyio
async def test_another_origin_gets_no_cors_headers(serve: ClientFactory) -> None:
    async with serve(cors_origins=(APP,)) as client:
        response = await client.options("/v1/me/cart", headers=preflight("https://evil.example"))
    assert_no_leak(response)
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "https://continuity.dev/problems/cors-refused"
    assert not [name for name in response.headers if name.startswith("access-control-")]


@pytest.mark.anyio
async def test_a_preflight_asking_for_a_header_not_allowed_is_a_problem(
    serve: ClientFactory,
) -> None:
    async with serve(cors_origins=(APP,)) as client:
        response = await client.options(
            "/v1/me/cart",
            headers={**preflight(APP), "Access-Control-Request-Headers": "X-Secret"},
        )
    assert response.status_code == 403
    assert response.json()["type"] == "https://continuity.dev/problems/cors-refused"
    assert "x-secret" in response.json()["detail"]


@pytest.mark.anyio
async def test_a_configured_origin_may_read_etag_and_request_id(
    serve: ClientFactory, auth: TokenFactory
) -> None:
    customer = uuid4()
    async with serve(cors_origins=(APP,)) as client:
        added = await client.post(
            "/v1/me/cart/items",
            json={"sku": "MUG-1", "name": "Blue mug", "unit_price": "12.50", "quantity": 1},
            headers={**auth(customer), "Origin": APP},
        )
        other = await client.get(
            "/v1/me/cart", headers={**auth(customer), "Origin": "https://evil.example"}
        )
    assert added.status_code == 200, added.text
    assert added.headers["access-control-allow-origin"] == APP
    assert "origin" in added.headers["vary"].lower()
    exposed = listed(added.headers["access-control-expose-headers"])
    assert {"etag", "x-request-id", "retry-after"} <= exposed
    assert other.status_code == 200
    assert not [name for name in other.headers if name.startswith("access-control-")]
