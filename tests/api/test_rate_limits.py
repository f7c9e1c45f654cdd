"""Rate limits per client on token-free requests: 429 problems with Retry-After, and
X-Forwarded-For honoured only from trusted proxies."""

from __future__ import annotations

from uuid import uuid4

import pytest

from tests.conftest import AppFactory, client_of
from tests.helpers import TokenFactory

pytestmark = pytest.mark.anyio


async def test_token_free_requests_are_limited_per_client(
    started: AppFactory, auth: TokenFactory
) -> None:
    async with started(rate_limit_per_minute=3) as app, client_of(app) as client:
        for path in ["/health", "/ready", "/schema/openapi.json"]:
            answered = await client.get(path)
            assert answered.status_code == 200, path
            assert answered.headers["ratelimit-limit"] == "3"
        refused = await client.get("/health")
        assert refused.status_code == 429
        assert refused.headers["content-type"].startswith("application/problem+json")
        body = refused.json()
        assert body["type"].endswith("/rate-limited")
        assert body["title"] == "Too many requests"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.headers["ratelimit-remaining"] == "0"
        assert body["instance"] == f"urn:request:{refused.headers['x-request-id']}"

        customer = auth(uuid4())
        for _ in range(5):  # a token's requests are not counted here
            assert (await client.get("/v1/me/session", headers=customer)).status_code == 200

        async with client_of(app, peer="127.0.0.2") as neighbour:
            assert (await neighbour.get("/health")).status_code == 200


async def test_x_forwarded_for_counts_only_from_a_trusted_proxy(started: AppFactory) -> None:
    async with started(rate_limit_per_minute=2, trusted_proxies=("10.0.0.0/8",)) as app:
        async with client_of(app, peer="10.1.2.3") as proxy:

            async def via_proxy(forwarded: str) -> int:
                answer = await proxy.get("/health", headers={"X-Forwarded-For": forwarded})
                return answer.status_code

            assert [await via_proxy("203.0.113.7") for _ in range(3)] == [200, 200, 429]
            assert await via_proxy("203.0.113.8") == 200  # another client behind the proxy
            # What a client writes left of its own address is not believed: the key is the
            # address the trusted proxy saw (203.0.113.7), already at its limit.
            assert await via_proxy("198.51.100.9, 203.0.113.7, 10.0.0.1") == 429

        async with client_of(app, peer="192.0.2.50") as direct:
            statuses = [
                (
                    await direct.get("/health", headers={"X-Forwarded-For": f"203.0.113.{i}"})
                ).status_code
                for i in range(100, 103)
            ]
            assert statuses == [200, 200, 429]  # not a proxy: its header is ignored


async def test_no_limit_when_set_to_zero(started: AppFactory) -> None:
    async with started(rate_limit_per_minute=0) as app, client_of(app) as client:
        for _ in range(10):
            response = await client.get("/health")
            assert response.status_code == 200
            assert "ratelimit-limit" not in response.headers
