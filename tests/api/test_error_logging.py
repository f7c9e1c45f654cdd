"""Expected 4xx answers are logged at INFO in one line; 5xx at ERROR with the traceback."""

from __future__ import annotations

import logging
from uuid import uuid4

import httpx
import pytest
from litestar import Litestar, get

from tests.helpers import MUG, TokenFactory

pytestmark = pytest.mark.anyio


def api_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith(("continuity.api", "litestar"))]


@pytest.mark.parametrize(
    ("method", "path", "json", "status"),
    [
        ("GET", "/v1/me/cart", None, 404),
        ("POST", "/v1/me/cart/items", {**MUG, "quantity": "2"}, 400),
        ("POST", "/v1/me/cart/items", {**MUG, "unit_price": "1.005"}, 422),
        ("PATCH", "/v1/me/cart/items/NOPE", {"quantity": 1}, 404),
        ("PUT", "/v1/me/cart", None, 405),
        ("GET", "/v1/me/nowhere", None, 404),
    ],
)
async def test_a_4xx_is_one_info_line_without_a_traceback(
    client: httpx.AsyncClient,
    auth: TokenFactory,
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
    json: object,
    status: int,
) -> None:
    caplog.set_level(logging.DEBUG)
    response = await client.request(method, path, json=json, headers=auth(uuid4()))
    assert response.status_code == status
    records = api_records(caplog)
    assert len(records) == 1, [r.getMessage() for r in records]
    [record] = records
    assert record.levelno == logging.INFO
    assert record.exc_info is None
    assert str(status) in record.getMessage()
    assert "Traceback" not in caplog.text


async def test_unauthenticated_requests_are_logged_at_info(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    response = await client.get("/v1/me/session", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert [r.levelno for r in api_records(caplog)] == [logging.INFO]
    assert "nope" not in caplog.text


@get("/boom", include_in_schema=False, exclude_from_auth=True)
async def boom() -> None:
    raise RuntimeError("an internal detail that must stay in the log")


async def test_a_5xx_is_logged_at_error_with_the_traceback(
    app: Litestar, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    app.register(boom)
    caplog.set_level(logging.DEBUG)
    response = await client.get("/boom")
    assert response.status_code == 500
    assert "internal detail" not in response.text
    assert response.json()["title"] == "Internal server error"
    [record] = api_records(caplog)
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)
    assert "Traceback" in caplog.text
    assert "internal detail" in caplog.text
