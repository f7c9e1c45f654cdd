"""Recently verified tokens skip the signature check, but never past their expiry, never for
longer than the cache's time to live, and never beyond its size."""

from __future__ import annotations

import time
from datetime import timedelta
from uuid import uuid4

import anyio
import httpx
import jwt
import pytest
from litestar.exceptions import NotAuthorizedException

from api.auth import AUDIENCE, issue_token
from api.issuers import BuiltInIssuer, Issuers
from api.verified_tokens import VerifiedTokens
from tests.helpers import SECRET as TEST_SECRET

pytestmark = pytest.mark.anyio

SECRET = "s" * 40


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_an_entry_lasts_until_the_token_expires_or_the_ttl_runs_out() -> None:
    clock = Clock(1_000.0)
    tokens = VerifiedTokens(ttl=60, clock=clock)
    tokens.put("soon", {"exp": 1_010, "sub": "a"})
    tokens.put("later", {"exp": 5_000, "sub": "b"})
    clock.now = 1_009.9
    assert tokens.get("soon") == {"exp": 1_010, "sub": "a"}
    clock.now = 1_010.0
    assert tokens.get("soon") is None
    assert tokens.get("later") is not None
    clock.now = 1_060.0
    assert tokens.get("later") is None
    assert len(tokens) == 0


def test_the_least_recently_used_go_first_and_callers_get_copies() -> None:
    tokens = VerifiedTokens(size=2, clock=Clock(0.0))
    tokens.put("a", {"exp": 99})
    tokens.put("b", {"exp": 99})
    claims = tokens.get("a")
    assert claims is not None
    claims["sub"] = "changed"
    tokens.put("c", {"exp": 99})
    assert tokens.get("b") is None
    assert tokens.get("a") == {"exp": 99}
    assert tokens.get("c") == {"exp": 99}


async def test_a_refused_token_is_never_remembered() -> None:
    issuers = Issuers([BuiltInIssuer(SECRET, AUDIENCE)])
    good = issue_token(SECRET, uuid4(), "customer", "phone", timedelta(minutes=5))
    assert (await issuers.verify(good))["sub"]
    assert len(issuers.verified) == 1
    wrong = issue_token("t" * 40, uuid4(), "customer", "phone", timedelta(minutes=5))
    for _ in range(2):
        with pytest.raises(NotAuthorizedException):
            await issuers.verify(wrong)
    assert len(issuers.verified) == 1


async def test_a_remembered_token_is_refused_once_it_expires() -> None:
    issuers = Issuers([BuiltInIssuer(SECRET, AUDIENCE)])
    token = issue_token(SECRET, uuid4(), "customer", "phone", timedelta(seconds=1))
    claims = await issuers.verify(token)
    assert await issuers.verify(token) == claims
    await anyio.sleep(max(0.0, claims["exp"] - time.time()) + 0.05)
    with pytest.raises(NotAuthorizedException, match="expired"):
        await issuers.verify(token)


def test_what_is_attached_to_a_token_lives_as_long_as_its_entry() -> None:
    clock = Clock(1_000.0)
    tokens = VerifiedTokens(ttl=60, size=2, clock=clock)
    user = object()
    tokens.attach("never verified", user)
    assert tokens.attached("never verified") is None
    tokens.put("a", {"exp": 1_010})
    assert tokens.attached("a") is None
    tokens.attach("a", user)
    assert tokens.attached("a") is user
    clock.now = 1_010.0
    assert tokens.attached("a") is None
    tokens.put("b", {"exp": 5_000})
    tokens.attach("b", user)
    tokens.put("c", {"exp": 5_000})
    tokens.put("d", {"exp": 5_000})
    assert tokens.attached("b") is None


async def test_a_token_the_app_has_authenticated_is_refused_once_it_expires(
    client: httpx.AsyncClient,
) -> None:
    token = issue_token(TEST_SECRET, uuid4(), "customer", "phone", timedelta(seconds=2))
    headers = {"Authorization": f"Bearer {token}"}
    for _ in range(3):  # the first verifies; the next ones reuse what it made
        assert (await client.get("/v1/me/session", headers=headers)).status_code != 401
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    await anyio.sleep(max(0.0, expires - time.time()) + 0.05)
    refused = await client.get("/v1/me/session", headers=headers)
    assert refused.status_code == 401
    assert "expired" in refused.json()["detail"]
