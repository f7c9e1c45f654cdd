"""The timeline over HTTP: a cart change on the web, a conversation by email and an application
step on the app come back in log order with their channel and device; pages and filters; the
agent's read needs a purpose and is audited; a customer reads only their own; an erased
customer's timeline is gone (410). The timeline is an async projection: the tests wait for its
runner (started with the app) to apply what they wrote."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from litestar import Litestar

from aggregates.conversation import Conversation
from aggregates.metadata import EventMeta
from continuity.erasure import shred_subject
from continuity.repository import IdempotencyKey
from continuity.runtime import Runtime
from tests.api.test_agent_views import PURPOSE, agent_headers
from tests.api.test_applications import IDENTITY, Customer
from tests.helpers import MUG, TokenFactory

pytestmark = pytest.mark.anyio

EMAIL = EventMeta("email", "Thunderbird on the office PC")
MINE = "/v1/me/timeline"


def theirs(customer: UUID) -> str:
    return f"/v1/agent/customers/{customer}/timeline"


async def timeline(
    client: httpx.AsyncClient, headers: dict[str, str], url: str = MINE, **params: Any
) -> dict[str, Any]:
    answer = await client.get(url, params=params, headers=headers)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def until_listed(
    client: httpx.AsyncClient, headers: dict[str, str], count: int
) -> list[dict[str, Any]]:
    """The customer's timeline once the projection's runner has applied `count` entries."""
    for _ in range(1000):
        items: list[dict[str, Any]] = (await timeline(client, headers, limit=100))["items"]
        if len(items) >= count:
            return items
        await asyncio.sleep(0.02)
    raise AssertionError("the timeline did not catch up")


async def email_from(runtime: Runtime, customer: UUID, text: str) -> Conversation:
    """A conversation the customer opens by email (what an inbound email would record)."""
    conversation = Conversation(subject_id=customer, medium="email")
    conversation.add_turn("customer", text, "email")
    key = IdempotencyKey(customer, uuid4())
    await runtime.repository.save(conversation, customer, EMAIL, key, b"email")
    return conversation


async def across_channels(
    client: httpx.AsyncClient, auth: TokenFactory, runtime: Runtime
) -> tuple[Customer, str]:
    """A cart change on the web (laptop), an email, an application step on the app (phone)."""
    me = Customer(client, auth)
    added = await client.post(
        "/v1/me/cart/items", json=MUG, headers={**me.laptop, "X-Channel": "web"}
    )
    assert added.status_code == 200, added.text
    await email_from(runtime, me.id, "Did my blue mug ship? - Zebulon")
    on_app = {**me.phone, "X-Channel": "app"}
    app_id = (await me.start(on_app))["application_id"]
    assert (await me.step(on_app, app_id, "identity", IDENTITY)).status_code == 200
    return me, app_id


async def test_the_timeline_lists_every_channel_in_log_order(
    client: httpx.AsyncClient, auth: TokenFactory, runtime: Runtime
) -> None:
    me, app_id = await across_channels(client, auth, runtime)
    items = await until_listed(client, me.phone, 5)
    said = [(i["kind"], i["channel"], i["device"], i["actor_type"]) for i in items]
    assert said == [
        ("application.step_completed", "app", "phone", "customer"),
        ("application.started", "app", "phone", "customer"),
        ("conversation.turn_added", "email", EMAIL.device, "customer"),
        ("conversation.opened", "email", EMAIL.device, "customer"),
        ("cart.item_added", "web", "laptop", "customer"),
    ]
    positions = [i["position"] for i in items]
    assert positions == sorted(positions, reverse=True)
    assert items[0]["stream"] == "application"
    assert items[0]["stream_id"] == app_id
    assert items[0]["summary"] == {
        "step": "identity",
        "fields": sorted(IDENTITY),
        "next_step": "employment",
    }
    assert items[2]["summary"]["text"] == "Did my blue mug ship? - Zebulon"
    assert items[4]["summary"] == {"sku": MUG["sku"], "name": MUG["name"], "quantity": 1}
    oldest = (await timeline(client, me.laptop, order="oldest"))["items"]
    assert oldest == items[::-1]
    assert IDENTITY["last_name"] not in str(items), "answers are not in the timeline"


async def test_pages_and_filters_by_channel_and_kind(
    client: httpx.AsyncClient, auth: TokenFactory, runtime: Runtime
) -> None:
    me, _ = await across_channels(client, auth, runtime)
    items = await until_listed(client, me.phone, 5)

    first = await timeline(client, me.phone, limit=2)
    assert first["items"] == items[:2]
    second = await timeline(client, me.phone, limit=2, cursor=first["next_cursor"])
    assert second["items"] == items[2:4]
    last = await timeline(client, me.phone, limit=2, cursor=second["next_cursor"])
    assert (last["items"], last["next_cursor"]) == (items[4:], None)

    web_or_app = await timeline(client, me.phone, channel=["web", "app"])
    assert [i["channel"] for i in web_or_app["items"]] == ["app", "app", "web"]
    talk = await timeline(client, me.phone, kind="conversation")
    assert [i["kind"] for i in talk["items"]] == ["conversation.turn_added", "conversation.opened"]
    mixed = await timeline(client, me.phone, kind=["cart.item_added", "application.started"])
    assert [i["kind"] for i in mixed["items"]] == ["application.started", "cart.item_added"]
    both = await timeline(client, me.phone, channel="email", kind="conversation.opened")
    assert [i["kind"] for i in both["items"]] == ["conversation.opened"]

    for params, field in (
        ({"cursor": "not a cursor"}, "cursor"),
        ({"kind": "cart.teleported"}, "kind"),
        ({"channel": "pigeon"}, "channel"),
        ({"limit": "101"}, "limit"),
        ({"order": "sideways"}, "order"),
        ({"chanel": "web"}, "chanel"),
    ):
        bad = await client.get(MINE, params=params, headers=me.phone)
        assert bad.status_code == 400, (params, bad.text)
        assert bad.headers["content-type"].startswith("application/problem+json")
        assert bad.json()["field"] == field, bad.json()

    etag = (await client.get(MINE, headers=me.phone)).headers["ETag"]
    again = await client.get(MINE, headers={**me.phone, "If-None-Match": etag})
    assert again.status_code == 304


async def test_an_agent_reads_a_customers_timeline_with_a_purpose_and_it_is_audited(
    client: httpx.AsyncClient, auth: TokenFactory, app: Litestar
) -> None:
    runtime: Runtime = app.state.runtime
    me, _ = await across_channels(client, auth, runtime)
    items = await until_listed(client, me.phone, 5)
    agent = uuid4()
    for purpose in (None, "x"):
        refused = await client.get(theirs(me.id), headers=agent_headers(auth, agent, purpose))
        assert refused.status_code == 400
        assert refused.json()["field"] == "X-Purpose"
        assert "Zebulon" not in refused.text
    assert await runtime.audit.of_subject(me.id) == []

    seen = await timeline(client, agent_headers(auth, agent), theirs(me.id), kind="conversation")
    assert seen["items"] == [i for i in items if i["stream"] == "conversation"]
    (entry,) = await runtime.audit.of_subject(me.id)
    assert (entry.agent_id, entry.subject_id, entry.purpose, entry.resource_id) == (
        agent,
        me.id,
        PURPOSE,
        None,
    )
    assert entry.what == "GET /v1/agent/customers/{customer_id}/timeline"


async def test_a_customer_reads_only_their_own_timeline(
    client: httpx.AsyncClient, auth: TokenFactory, runtime: Runtime
) -> None:
    me, _ = await across_channels(client, auth, runtime)
    await until_listed(client, me.phone, 5)
    other = Customer(client, auth)
    assert (await timeline(client, other.phone))["items"] == []
    as_agent = await client.get(theirs(me.id), headers={**other.phone, "X-Purpose": PURPOSE})
    assert as_agent.status_code == 403
    assert "Zebulon" not in as_agent.text


async def test_an_erased_customers_timeline_is_gone(
    client: httpx.AsyncClient, auth: TokenFactory, runtime: Runtime
) -> None:
    me, _ = await across_channels(client, auth, runtime)
    await until_listed(client, me.phone, 5)
    await shred_subject(runtime.store, runtime.vault, me.id)
    mine = await client.get(MINE, headers=me.phone)
    assert mine.status_code == 410, mine.text
    agent = await client.get(theirs(me.id), headers=agent_headers(auth, uuid4()))
    assert agent.status_code == 410, agent.text
    assert "Zebulon" not in mine.text + agent.text
