"""Activity through HTTP: what the phone viewed, searched and is on shows on the laptop; retries
record once; nothing is recorded while personalization is refused; agents see it (audited); the
database holds none of it in clear."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest

from aggregates.activity import Activity
from continuity.runner import ProjectionRunner
from continuity.runtime import Runtime
from projections.activity import MAX_RECENTLY_VIEWED
from tests.api.test_agent_views import agent_headers
from tests.helpers import TokenFactory, run_to_head
from tests.privacy.test_at_rest import table_bytes

pytestmark = pytest.mark.anyio

PRODUCT_NAME = "Quillfeather Obsidian Kettle 5521"
QUERY = "kettles for Wilhelmina's birthday 9043"


def viewed(sku: str, name: str = "Mug", **more: Any) -> dict[str, Any]:
    return {"type": "viewed", "sku": sku, "name": name, **more}


async def post(
    client: httpx.AsyncClient, headers: dict[str, str], *items: dict[str, Any]
) -> httpx.Response:
    return await client.post("/v1/me/activity", json={"items": list(items)}, headers=headers)


async def test_what_the_phone_saw_shows_on_the_laptop(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    customer = uuid4()
    phone, laptop = auth(customer, "phone"), auth(customer, "laptop")
    application_id = str(uuid4())
    first = await post(
        client,
        {**phone, "X-Channel": "app"},
        viewed("KET-1", PRODUCT_NAME, price="49.90", currency="EUR"),
        {"type": "searched", "query": QUERY, "results": 3},
        viewed("MUG-1"),
        {"type": "screen", "screen": "application", "application_id": application_id, "step": "x"},
    )
    assert first.status_code == 200, first.text
    assert first.headers["etag"]
    await post(client, laptop, {"type": "screen", "screen": "home"})

    session = (await client.get("/v1/me/session", headers=laptop)).json()
    assert session["personalization"] is True
    assert [(p["sku"], p["device"]) for p in session["recently_viewed"]] == [
        ("MUG-1", "phone"),
        ("KET-1", "phone"),
    ]
    kettle = session["recently_viewed"][1]
    assert (kettle["name"], kettle["price"], kettle["currency"]) == (PRODUCT_NAME, "49.90", "EUR")
    assert [(s["query"], s["results"]) for s in session["recent_searches"]] == [(QUERY, 3)]
    points = {d["device"]: d["resume_point"] for d in session["devices"]}
    assert points["laptop"]["screen"] == "home"
    assert (points["phone"]["screen"], points["phone"]["step"]) == ("application", "x")
    assert points["phone"]["application_id"] == application_id
    assert [d["channel"] for d in session["devices"]] == ["web", "app"]


async def test_recently_viewed_is_newest_first_a_sku_once_and_bounded(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    phone = auth(uuid4())
    skus = [f"SKU-{n}" for n in range(MAX_RECENTLY_VIEWED + 5)]
    assert (await post(client, phone, *(viewed(s) for s in skus))).status_code == 200
    again = await post(client, phone, viewed("SKU-0"), {"type": "screen", "screen": "home"})
    shown = [p["sku"] for p in again.json()["recently_viewed"]]
    assert shown == ["SKU-0", *reversed(skus[-(MAX_RECENTLY_VIEWED - 1) :])]
    assert len(shown) == MAX_RECENTLY_VIEWED


async def test_a_retried_request_is_recorded_once(
    client: httpx.AsyncClient, auth: TokenFactory, runtime: Runtime
) -> None:
    customer = uuid4()
    headers = {**auth(customer), "Idempotency-Key": str(uuid4())}
    first = await post(client, headers, viewed("MUG-1"), viewed("TEA-1"))
    again = await post(client, headers, viewed("MUG-1"), viewed("TEA-1"))
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    events = await runtime.store.select_events(Activity.create_id(customer))
    assert len(events) == 3, "Started and the two views, once"
    other = await post(client, headers, viewed("CUP-1"))
    assert other.status_code == 422
    assert other.json()["type"].endswith("/idempotency-key-reused")


async def test_nothing_is_recorded_while_personalization_is_refused(
    client: httpx.AsyncClient, auth: TokenFactory, runtime: Runtime
) -> None:
    customer = uuid4()
    phone = auth(customer)
    assert (await client.get("/v1/me/preferences", headers=phone)).json() == {
        "personalization": True
    }
    await post(client, phone, viewed("MUG-1"), {"type": "screen", "screen": "cart"})
    refused = await client.put("/v1/me/preferences", json={"personalization": False}, headers=phone)
    assert refused.status_code == 200, refused.text
    assert refused.json() == {"personalization": False}
    assert not await runtime.activity.personalization_allowed(customer)
    session = (await client.get("/v1/me/session", headers=phone)).json()
    assert (session["personalization"], session["recently_viewed"]) == (False, [])
    assert session["devices"][0]["resume_point"] is None

    stream = Activity.create_id(customer)
    before = len(await runtime.store.select_events(stream))
    answer = await post(client, phone, viewed("TEA-1"))
    assert answer.status_code == 403
    problem = answer.json()
    assert problem["type"] == "https://continuity.dev/problems/consent-required"
    assert problem["purpose"] == "personalization"
    assert len(await runtime.store.select_events(stream)) == before

    allowed = await client.put("/v1/me/preferences", json={"personalization": True}, headers=phone)
    assert allowed.json() == {"personalization": True}
    assert (await post(client, phone, viewed("TEA-1"))).status_code == 200
    shown = (await client.get("/v1/me/session", headers=phone)).json()["recently_viewed"]
    assert [p["sku"] for p in shown] == ["TEA-1"]


async def test_an_agent_sees_the_activity_and_the_read_is_audited(
    client: httpx.AsyncClient, auth: TokenFactory, runtime: Runtime
) -> None:
    customer = uuid4()
    await post(
        client, auth(customer), viewed("KET-1", PRODUCT_NAME), {"type": "searched", "query": QUERY}
    )
    agent = uuid4()
    seen = await client.get(
        f"/v1/agent/customers/{customer}/session", headers=agent_headers(auth, agent)
    )
    assert seen.status_code == 200, seen.text
    assert [p["name"] for p in seen.json()["recently_viewed"]] == [PRODUCT_NAME]
    assert [s["query"] for s in seen.json()["recent_searches"]] == [QUERY]
    (entry,) = await runtime.audit.of_subject(customer)
    assert (entry.agent_id, entry.what) == (agent, "GET /v1/agent/customers/{customer_id}/session")


async def test_bad_items_are_refused_whole(client: httpx.AsyncClient, auth: TokenFactory) -> None:
    phone = auth(uuid4())
    unknown = await post(client, phone, viewed("MUG-1"), {"type": "liked", "sku": "MUG-1"})
    assert unknown.status_code == 400
    no_currency = await post(client, phone, viewed("MUG-1", price="2.50"))
    assert no_currency.status_code == 422
    assert no_currency.json()["field"] == "items[0].currency"
    too_many = await post(client, phone, *(viewed(f"S-{n}") for n in range(51)))
    assert too_many.status_code == 400
    session = (await client.get("/v1/me/session", headers=phone)).json()
    assert session["recently_viewed"] == []


async def test_no_product_name_nor_query_in_clear_at_rest(
    client: httpx.AsyncClient,
    auth: TokenFactory,
    runtime: Runtime,
    database_url: str,
    schema: str,
) -> None:
    customer = uuid4()
    answer = await post(
        client,
        auth(customer),
        viewed("KET-1", PRODUCT_NAME),
        {"type": "searched", "query": QUERY},
        {"type": "screen", "screen": "checkout"},
    )
    assert answer.status_code == 200
    await _timeline_to_head(runtime, customer)
    conn = await asyncpg.connect(database_url)
    try:
        scanned = await table_bytes(conn, schema)
    finally:
        await conn.close()
    assert {"events", "session_views", "timeline"} <= {name for name, _ in scanned}
    for value in (PRODUCT_NAME, QUERY):
        for needle in (value.encode(), value.encode().hex().encode(), value.lower().encode()):
            for name, data in scanned:
                assert needle not in data.lower(), f"{value!r} found in clear in {name}"


async def _timeline_to_head(runtime: Runtime, customer: UUID) -> None:
    """The timeline's rows for the activity written (sealed: the scan must see them)."""
    await run_to_head(ProjectionRunner(runtime.store, runtime.mapper, runtime.timeline))
    page = await runtime.timeline.page(runtime.pool, customer)
    kinds = [entry.kind for entry in page.entries]
    assert kinds == ["activity.screen_shown", "activity.searched", "activity.product_viewed"]
    assert page.entries[1].summary.query == QUERY
