"""Every answer carries a request id (X-Request-ID), problems name it as `instance`, and every
log line of the request carries it; the access log names routes, never raw paths or queries."""

from __future__ import annotations

import logging
import re
from uuid import uuid4

import httpx
import pytest

from tests.helpers import TokenFactory

GENERATED = re.compile(r"[0-9a-f]{32}")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/health", 200),
        ("GET", "/v1/me/session", 401),
        ("GET", "/nowhere", 404),
        ("PUT", "/health", 405),
        ("OPTIONS", "/v1/me/cart", 204),
    ],
)
async def test_every_answer_carries_a_fresh_request_id(
    client: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    first = await client.request(method, path)
    second = await client.request(method, path)
    assert first.status_code == status, first.text
    assert GENERATED.fullmatch(first.headers["x-request-id"])
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/v1/me/session", "/nowhere"])
async def test_a_problem_names_its_request_as_instance(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["instance"] == f"urn:request:{response.headers['x-request-id']}"


@pytest.mark.anyio
async def test_a_sane_incoming_request_id_is_kept_and_any_other_replaced(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    kept = await client.get("/v1/me/cart", headers={**auth(uuid4()), "X-Request-ID": "lb-7f3a.9"})
    assert kept.status_code == 404
    assert kept.headers["x-request-id"] == "lb-7f3a.9"
    assert kept.json()["instance"] == "urn:request:lb-7f3a.9"
    for hostile in [b"jane@example.com", b"a" * 65, b"two words", "\u00fcn".encode("latin-1")]:
        replaced = await client.get("/health", headers={b"X-Request-ID": hostile})
        assert GENERATED.fullmatch(replaced.headers["x-request-id"]), hostile


@pytest.mark.anyio
async def test_the_access_log_names_the_route_and_holds_no_personal_data(
    client: httpx.AsyncClient, auth: TokenFactory, caplog: pytest.LogCaptureFixture
) -> None:
    customer = uuid4()
    headers = {**auth(customer), "X-Request-ID": "req-access-1"}
    caplog.set_level(logging.INFO)
    await client.post(
        "/v1/me/cart/items",
        json={"sku": "MUG-1", "name": "Jane's mug", "unit_price": "12.50", "quantity": 1},
        headers=headers,
    )
    await client.delete("/v1/me/cart/items/MUG-1?email=jane@example.com", headers=headers)
    access = [r for r in caplog.records if r.name == "continuity.access"]
    assert [(r.method, r.route, r.status) for r in access] == [  # type: ignore[attr-defined]
        ("POST", "/v1/me/cart/items", 200),
        ("DELETE", "/v1/me/cart/items/{sku}", 200),
    ]
    assert all(r.request_id == "req-access-1" for r in access)  # type: ignore[attr-defined]
    text = "\n".join(f"{r.getMessage()} {vars(r)}" for r in access)
    token = headers["Authorization"].removeprefix("Bearer ")
    for secret in ["jane@example.com", "Jane's mug", "MUG-1", token, "127.0.0.1", str(customer)]:
        assert secret not in text
