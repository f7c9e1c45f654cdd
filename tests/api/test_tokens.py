"""Continuity's own tokens: issuer, audience and role are checked on every request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from api.auth import issue_token
from continuity.settings import Settings
from privacy.master_key import Keyring
from tests.helpers import SECRET, TokenFactory, serve

pytestmark = pytest.mark.anyio


def signed(secret: str = SECRET, algorithm: str = "HS256", **override: Any) -> str:
    """A token signed like `continuity token` signs, with claims changed or (None) dropped."""
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": str(uuid4()),
        "iss": "continuity",
        "aud": "continuity",
        "iat": now,
        "exp": now + timedelta(hours=1),
        "role": "customer",
        "device": "phone",
    }
    claims.update(override)
    payload = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(payload, secret, algorithm=algorithm)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_well_formed_token_is_accepted(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/me/session", headers=bearer(signed()))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("claims", "detail"),
    [
        ({"aud": None}, 'missing the "aud" claim'),
        ({"aud": "another-api"}, "Audience doesn't match"),
        ({"iss": None}, "issuer (iss) is not accepted"),
        ({"iss": "someone-else"}, "issuer (iss) is not accepted"),
        ({"role": None}, "must carry a role"),
        ({"role": "admin"}, "must carry a role"),
        ({"role": ["customer"]}, "must carry a role"),
        ({"device": None}, "must name its device"),
        ({"device": "x" * 101}, "device must be 1 to 100 characters"),
        ({"device": 7}, "claims are malformed"),
        ({"sub": "alice"}, "subject is not a UUID"),
        ({"sub": 12}, "Subject must be a string"),
        ({"exp": None}, 'missing the "exp" claim'),
        pytest.param(
            {"exp": datetime.now(UTC) - timedelta(seconds=5)}, "expired", id="exp-5s-ago-expired"
        ),
    ],
    ids=str,
)
async def test_tokens_failing_a_check_are_401_problems(
    client: httpx.AsyncClient, claims: dict[str, Any], detail: str
) -> None:
    response = await client.get("/v1/me/session", headers=bearer(signed(**claims)))
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert detail in response.json()["detail"]


async def test_our_issuer_is_hs256_only(client: httpx.AsyncClient) -> None:
    forged = signed(secret=Ed25519PrivateKey.generate(), algorithm="EdDSA")  # type: ignore[arg-type]
    response = await client.get("/v1/me/session", headers=bearer(forged))
    assert response.status_code == 401
    assert "alg value is not allowed" in response.json()["detail"]


async def test_a_role_token_without_a_role_is_not_a_customer(client: httpx.AsyncClient) -> None:
    """An agent token that forgot its role must not pass as a customer's device token."""
    response = await client.get("/v1/me/session", headers=bearer(signed(role=None)))
    assert response.status_code == 401


@pytest.fixture
async def shop_client(
    database_url: str, schema: str, keyring: Keyring
) -> AsyncIterator[httpx.AsyncClient]:
    """The app configured with CONTINUITY_JWT_AUDIENCE=shop-api."""
    settings = Settings(database_schema=schema, jwt_secret=SECRET, jwt_audience="shop-api")
    async with serve(settings, database_url, keyring) as (_, client):
        yield client


async def test_the_audience_is_configurable(
    shop_client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    ours = issue_token(SECRET, uuid4(), "customer", "phone", timedelta(hours=1), "shop-api")
    assert (await shop_client.get("/v1/me/session", headers=bearer(ours))).status_code == 200
    default_audience = await shop_client.get("/v1/me/session", headers=auth(uuid4()))
    assert default_audience.status_code == 401
    assert "Audience doesn't match" in default_audience.json()["detail"]


def test_issued_tokens_carry_issuer_and_audience() -> None:
    token = issue_token(SECRET, uuid4(), "agent", None, timedelta(minutes=5), "shop-api")
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience="shop-api")
    assert (claims["iss"], claims["aud"], claims["role"]) == ("continuity", "shop-api", "agent")


def test_a_token_cannot_be_issued_without_a_known_role() -> None:
    with pytest.raises(ValueError, match="role"):
        issue_token(SECRET, uuid4(), "admin", None, timedelta(minutes=5))  # type: ignore[arg-type]
