"""/metrics: Prometheus text with requests by route template and status, appends, pool usage
and projection lag; no token needed and no personal data in any label."""

from __future__ import annotations

from uuid import uuid4

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from continuity.settings import Settings
from tests.helpers import TokenFactory

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.mark.anyio
async def test_metrics_count_requests_appends_pool_and_lag(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    customer = uuid4()
    headers = {**auth(customer), "Idempotency-Key": str(uuid4())}
    add = {"sku": "MUG-1", "name": "Blue mug", "unit_price": "12.50", "quantity": 1}
    for _ in range(2):  # the retry is answered without an append
        added = await client.post("/v1/me/cart/items", json=add, headers=headers)
        assert added.status_code == 200
    for _ in range(2):
        await client.patch("/v1/me/cart/items/MUG-1", json={"quantity": 2}, headers=auth(customer))
    await client.get(f"/v1/me/cart/items/{customer}")

    samples = await scrape(client)
    requests = "continuity_http_requests_total"
    assert value(samples, requests, method="POST", route="/v1/me/cart/items", status="200") == 2
    patch = {"method": "PATCH", "route": "/v1/me/cart/items/{sku}", "status": "200"}
    assert value(samples, requests, **patch) == 2
    assert value(samples, "continuity_http_request_duration_seconds_count", **patch) == 2
    assert value(samples, requests, method="GET", route="unmatched", status="405") == 1
    assert value(samples, "continuity_appends_total", outcome="committed") == 3
    assert value(samples, "continuity_appended_events_total") == 4  # opened + added, 2 changes
    assert value(samples, "continuity_append_duration_seconds_count", outcome="committed") == 3
    assert value(samples, "continuity_db_pool_max_connections") == Settings.pool_max_size
    pool = {
        state: samples[("continuity_db_pool_connections", frozenset({("state", state)}))]
        for state in ("idle", "in_use")
    }  # how they split depends on what the projection runners hold at the scrape's moment
    assert pool["idle"] + pool["in_use"] >= 1
    assert value(samples, "continuity_log_head_position") >= 4
    assert value(samples, "continuity_projection_behind_events", projection="session") == 0
    assert value(samples, "continuity_projection_position", projection="session") == value(
        samples, "continuity_log_head_position"
    )
    labels = " ".join(v for (_, pairs) in samples for _, v in pairs)
    assert str(customer) not in labels
    assert "phone" not in labels


@pytest.mark.anyio
async def test_an_async_projection_behind_the_log_shows_its_lag(
    client: httpx.AsyncClient, auth: TokenFactory, runtime: object
) -> None:
    from continuity.runtime import Runtime

    assert isinstance(runtime, Runtime)
    add = {"sku": "MUG-1", "name": "Blue mug", "unit_price": "12.50", "quantity": 1}
    await client.post("/v1/me/cart/items", json=add, headers=auth(uuid4()))
    async with runtime.pool.acquire() as conn:
        await conn.execute("DELETE FROM projections WHERE name = 'session'")
    samples = await scrape(client)
    assert value(samples, "continuity_projection_position", projection="session") == 0
    assert value(samples, "continuity_projection_behind_events", projection="session") == 2


@pytest.mark.anyio
async def test_ops_routes_need_no_token_and_say_so_in_the_schema(
    client: httpx.AsyncClient,
) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    for path in ["/health", "/ready", "/metrics"]:
        assert (await client.get(path)).status_code == 200, path
        assert schema["paths"][path]["get"]["security"] == [{}], path
    assert schema["security"] == [{"BearerToken": []}]
    assert "security" not in schema["paths"]["/v1/me/session"]["get"]
