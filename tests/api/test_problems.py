"""Every error is a problem with a stable type and a title; 401s say how to authenticate and
whether the token expired; no body carries an internal identifier or an exception's text."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import httpx
import pytest
from litestar.testing import RequestFactory

from api.auth import issue_token
from api.problems import PROBLEM_BASE, PROBLEM_TYPES, to_problem
from continuity.errors import ConcurrencyConflict, EventIdReused, IntegrityViolation
from continuity.runtime import Runtime
from tests.api.test_tokens import signed
from tests.continuity.test_integrity import a_cart_whose_view_is_behind, tamper
from tests.helpers import MUG, TokenFactory

pytestmark = pytest.mark.anyio

TITLES = {t.uri: t.title for t in PROBLEM_TYPES}
UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
ERRORS_DOC = Path(__file__).parents[2] / "docs" / "errors.md"


def assert_catalogued(response: httpx.Response, slug: str) -> dict[str, object]:
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, object] = response.json()
    assert body["type"] == PROBLEM_BASE + slug, body
    assert body["title"] == TITLES[PROBLEM_BASE + slug]
    assert body["status"] == response.status_code
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return body


async def test_no_cart_yet_is_a_typed_404(client: httpx.AsyncClient, auth: TokenFactory) -> None:
    response = await client.get("/v1/me/cart", headers=auth(uuid4()))
    assert response.status_code == 404
    assert_catalogued(response, "no-cart")


async def test_an_unknown_route_is_a_typed_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/nowhere")
    assert response.status_code == 404
    assert_catalogued(response, "not-found")


async def test_a_wrong_method_is_a_typed_405_with_allow(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    response = await client.put("/v1/me/cart", headers=auth(uuid4()))
    assert response.status_code == 405
    assert_catalogued(response, "method-not-allowed")
    assert "GET" in response.headers["allow"]


async def test_bad_json_is_a_typed_400(client: httpx.AsyncClient, auth: TokenFactory) -> None:
    response = await client.post(
        "/v1/me/cart/items",
        content=b'{"sku": ',
        headers={**auth(uuid4()), "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert_catalogued(response, "malformed-body")


async def test_no_token_is_a_401_with_a_bearer_challenge(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/me/session")
    assert response.status_code == 401
    assert_catalogued(response, "missing-token")
    assert response.headers["www-authenticate"] == 'Bearer realm="continuity"'


@pytest.mark.parametrize(
    "token",
    [
        "not-a-jwt",
        issue_token("another-secret-" + "y" * 40, uuid4(), "customer", "phone", timedelta(hours=1)),
    ],
    ids=["garbage", "another secret"],
)
async def test_a_bad_token_is_a_401_invalid_token(client: httpx.AsyncClient, token: str) -> None:
    response = await client.get("/v1/me/session", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    body = assert_catalogued(response, "invalid-token")
    assert body["token_expired"] is False
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert 'error="invalid_token"' in challenge
    assert "expired" not in challenge


async def test_an_expired_token_says_so(client: httpx.AsyncClient) -> None:
    token = signed(exp=datetime.now(UTC) - timedelta(seconds=5))
    response = await client.get("/v1/me/session", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    body = assert_catalogued(response, "token-expired")
    assert body["token_expired"] is True
    challenge = response.headers["www-authenticate"]
    assert 'error="invalid_token"' in challenge
    assert 'error_description="the token expired"' in challenge


async def test_another_role_is_a_typed_403(client: httpx.AsyncClient, auth: TokenFactory) -> None:
    response = await client.get("/v1/me/session", headers=auth(uuid4(), None, "agent"))
    assert response.status_code == 403
    assert_catalogued(response, "forbidden")


async def test_a_reused_idempotency_key_does_not_echo_it(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    key = str(uuid4())
    headers = {**auth(uuid4()), "Idempotency-Key": key}
    await client.post("/v1/me/cart/items", json=MUG, headers=headers)
    reused = await client.post("/v1/me/cart/items", json={**MUG, "sku": "TEA"}, headers=headers)
    assert reused.status_code == 422
    assert_catalogued(reused, "idempotency-key-reused")
    assert not UUID_TEXT.search(reused.text), reused.text


async def test_an_integrity_failure_names_no_position_or_stream(
    client: httpx.AsyncClient, auth: TokenFactory, runtime: Runtime
) -> None:
    cart_id, headers = await a_cart_whose_view_is_behind(client, auth, runtime)
    await tamper(
        runtime.pool,
        "UPDATE events SET payload = set_byte(payload, 20, get_byte(payload, 20) # 1)"
        " WHERE stream_id = $1 AND version = 2",
        cart_id,
    )
    response = await client.post("/v1/me/cart/items", json={**MUG, "sku": "B"}, headers=headers)
    assert response.status_code == 500
    body = assert_catalogued(response, "integrity")
    assert not UUID_TEXT.search(response.text), body
    assert "position" not in response.text
    assert "version" not in str(body["detail"])


def test_conflicts_and_reuse_carry_no_internal_identifiers() -> None:
    """Mapped directly: several conflicts in a row are hard to provoke over HTTP on purpose."""
    request = RequestFactory().get("/v1/me/cart/items")
    stream, event = uuid4(), uuid4()
    for exc in (
        ConcurrencyConflict(stream, 3, 4),
        EventIdReused(event),
        IntegrityViolation(f"the event at position 77 (stream {stream}, version 2)"),
        RuntimeError(f"secret internals of {stream}"),
    ):
        problem = to_problem(request, exc)
        text = repr(problem.to_response(request).content)
        assert str(stream) not in text
        assert str(event) not in text
        assert "77" not in text
        assert "secret" not in text
        assert problem.type_ in TITLES


def test_docs_errors_lists_every_problem_type() -> None:
    doc = ERRORS_DOC.read_text(encoding="utf-8")
    for problem_type in PROBLEM_TYPES:
        row = f"| `{problem_type.uri}` | {problem_type.status} | {problem_type.title} |"
        assert row in doc, f"docs/errors.md lacks {problem_type.slug}"
    listed = set(re.findall(re.escape(PROBLEM_BASE) + r"[a-z-]+", doc))
    assert listed == set(TITLES), "docs/errors.md lists a type the API does not have"
