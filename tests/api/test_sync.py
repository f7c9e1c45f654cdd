"""Offline sync over HTTP: a phone's queue flushed as one batch, retried, overlapping, stale.

Actions that commute apply even when the device had not seen the latest version; those that do
not are rejected with the target as it is now; a retried batch records nothing twice; one bad
action never stops the others. docs/sync.md states the rules these hold it to."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from api.limits import MAX_BATCH
from continuity.runtime import Runtime
from tests.conftest import ClientFactory
from tests.helpers import MUG as MUG_BODY
from tests.helpers import TokenFactory

pytestmark = pytest.mark.anyio

SYNC = "/v1/me/sync"
MUG: dict[str, Any] = dict(MUG_BODY)
TEA: dict[str, Any] = {"sku": "TEA-1", "name": "Green tea", "unit_price": "4.20", "quantity": 1}


def action(
    target: str,
    op: str,
    base: int = 0,
    *,
    target_id: object = None,
    event_id: UUID | None = None,
    occurred_at: datetime | None = None,
    **args: Any,
) -> dict[str, Any]:
    """One queued action as a device sends it."""
    sent: dict[str, Any] = {
        "event_id": str(event_id or uuid4()),
        "target": target,
        "base_version": base,
        "occurred_at": (occurred_at or datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
        "operation": {"op": op, **args},
    }
    if target_id is not None:
        sent["id"] = str(target_id)
    return sent


def draft(app: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A queued draft of the identity step of `app`, based on the version `app` shows."""
    return action(
        "application",
        "save_draft",
        app["version"],
        target_id=app["application_id"],
        step="identity",
        values=values,
    )


class Device:
    """One of a customer's devices, flushing its queue."""

    def __init__(self, client: httpx.AsyncClient, headers: dict[str, str]) -> None:
        self.client = client
        self.headers = {**headers, "X-Channel": "app"}

    async def sync(self, *actions: dict[str, Any]) -> list[dict[str, Any]]:
        answer = await self.client.post(SYNC, json={"actions": list(actions)}, headers=self.headers)
        assert answer.status_code == 200, answer.text
        results: list[dict[str, Any]] = answer.json()["results"]
        assert [r["event_id"] for r in results] == [a["event_id"] for a in actions]
        return results

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = await self.client.post(path, json=body, headers=self.headers)
        assert answer.status_code in (200, 201), answer.text
        found: dict[str, Any] = answer.json()
        return found


def customer(client: httpx.AsyncClient, auth: TokenFactory) -> tuple[Device, Device]:
    subject = uuid4()
    return Device(client, auth(subject, "phone")), Device(client, auth(subject, "laptop"))


def outcomes(results: list[dict[str, Any]]) -> list[str]:
    return [r["outcome"] for r in results]


async def events_in_log(runtime: Runtime) -> int:
    count: int = await runtime.pool.fetchval("SELECT count(*) FROM events")
    return count


async def test_a_batch_sent_three_times_records_each_event_once(
    client: httpx.AsyncClient, auth: TokenFactory, runtime: Runtime
) -> None:
    phone, _ = customer(client, auth)
    app = await phone.post("/v1/me/applications", {"form_type": "personal-loan"})
    chat = await phone.post("/v1/me/conversations", {"medium": "app_chat"})
    batch = [
        action("cart", "add_item", **MUG),
        action("cart", "add_item", **TEA),
        action("cart", "change_quantity", 0, sku="MUG-1", quantity=3),
        draft(app, {"first_name": "Ada"}),
        action(
            "conversation",
            "say",
            1,
            target_id=chat["conversation_id"],
            medium="app_chat",
            text="Is the mug dishwasher-safe?",
        ),
    ]
    before = await events_in_log(runtime)
    first = await phone.sync(*batch)
    assert outcomes(first) == ["applied"] * 5
    recorded = await events_in_log(runtime)
    assert recorded - before == 6  # the cart's opening, then one event an action
    assert [r["version"] for r in first] == [2, 3, 4, 2, 2]
    for _ in range(2):
        again = await phone.sync(*batch)
        assert outcomes(again) == ["duplicate"] * 5
        assert [r["position"] for r in again] == [r["position"] for r in first]
    assert await events_in_log(runtime) == recorded
    # A batch that overlaps the last: the old actions are duplicates, the new one applies.
    later = action("cart", "remove_item", 4, sku="TEA-1")
    overlapping = await phone.sync(batch[3], batch[4], later)
    assert outcomes(overlapping) == ["duplicate", "duplicate", "applied"]
    assert overlapping[0]["position"] == first[3]["position"]
    assert await events_in_log(runtime) == recorded + 1
    cart = (await client.get("/v1/me/cart", headers=phone.headers)).json()
    assert [(i["sku"], i["quantity"]) for i in cart["items"]] == [("MUG-1", 3)]


async def test_the_device_clock_is_recorded_and_orders_nothing(
    client: httpx.AsyncClient, auth: TokenFactory, runtime: Runtime
) -> None:
    phone, _ = customer(client, auth)
    late = datetime.now(UTC) - timedelta(hours=1)
    early = late - timedelta(hours=2)
    results = await phone.sync(
        action("cart", "add_item", occurred_at=late, **MUG),
        action("cart", "change_quantity", 0, occurred_at=early, sku="MUG-1", quantity=2),
    )
    assert outcomes(results) == ["applied", "applied"]
    assert results[0]["position"] < results[1]["position"]
    rows = await runtime.store.select_subject(await _subject(runtime))
    envelopes = await runtime.mapper.to_envelopes(rows)
    assert [e.meta.occurred_at for e in envelopes if e.meta] == [late, late, early]


async def _subject(runtime: Runtime) -> UUID:
    subject: UUID = await runtime.pool.fetchval("SELECT DISTINCT subject_id FROM events")
    return subject


async def test_stale_actions_that_commute_apply(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    phone, laptop = customer(client, auth)
    seeded = await phone.sync(action("cart", "add_item", **MUG), action("cart", "add_item", **TEA))
    seen = seeded[-1]["version"]  # both devices saw the cart at this version
    assert outcomes(
        await phone.sync(action("cart", "change_quantity", seen, sku="MUG-1", quantity=3))
    ) == ["applied"]
    stale = await laptop.sync(
        action("cart", "change_quantity", seen, sku="TEA-1", quantity=5),
        action("cart", "add_item", seen, **{**MUG, "quantity": 2}),
        action("cart", "add_item", seen, sku="CUP-9", name="Cup", unit_price="3.00"),
    )
    assert outcomes(stale) == ["applied"] * 3
    cart = (await client.get("/v1/me/cart", headers=phone.headers)).json()
    quantities = {i["sku"]: i["quantity"] for i in cart["items"]}
    assert quantities == {"MUG-1": 5, "TEA-1": 5, "CUP-9": 1}


async def test_a_stale_change_of_the_same_item_is_rejected_with_the_cart_as_it_is(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    phone, laptop = customer(client, auth)
    seen = (await phone.sync(action("cart", "add_item", **MUG)))[0]["version"]
    await phone.sync(action("cart", "change_quantity", seen, sku="MUG-1", quantity=3))
    [rejected] = await laptop.sync(action("cart", "change_quantity", seen, sku="MUG-1", quantity=7))
    assert rejected["outcome"] == "rejected"
    problem = rejected["problem"]
    assert problem["status"] == 412
    assert problem["type"].endswith("/stale-version")
    assert problem["field"] == "sku"
    assert rejected["current"]["target"] == "cart"
    assert rejected["current"]["cart"]["items"][0]["quantity"] == 3
    assert rejected["current"]["cart"]["version"] == seen + 1
    # Based on the version it now knows, the laptop's change applies; so would a checkout.
    now = rejected["current"]["cart"]["version"]
    again = await laptop.sync(
        action("cart", "change_quantity", now, sku="MUG-1", quantity=7),
        action("cart", "checkout", seen),
    )
    assert outcomes(again) == ["applied", "rejected"]
    assert again[1]["problem"]["field"] == "base_version"


async def test_anything_on_a_cart_checked_out_elsewhere_is_rejected(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    phone, laptop = customer(client, auth)
    seen = (await phone.sync(action("cart", "add_item", **MUG)))[0]["version"]
    assert outcomes(await phone.sync(action("cart", "checkout", seen))) == ["applied"]
    stale = await laptop.sync(
        action("cart", "add_item", seen, **TEA),
        action("cart", "change_quantity", seen, sku="MUG-1", quantity=2),
        action("cart", "add_item", 0, **TEA),  # a device with no open cart starts the next
    )
    assert outcomes(stale) == ["rejected", "rejected", "applied"]
    for rejected in stale[:2]:
        assert rejected["problem"]["status"] == 409
        assert rejected["problem"]["type"].endswith("/invalid-state")
        assert rejected["current"]["cart"]["status"] == "open"  # the new cart, after the batch
    cart = (await client.get("/v1/me/cart", headers=phone.headers)).json()
    assert [i["sku"] for i in cart["items"]] == ["TEA-1"]


async def test_an_add_to_a_cart_checked_out_before_the_batch_is_refused_with_it(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    phone, laptop = customer(client, auth)
    seen = (await phone.sync(action("cart", "add_item", **MUG)))[0]["version"]
    await phone.sync(action("cart", "checkout", seen))
    [rejected] = await laptop.sync(action("cart", "remove_item", seen, sku="MUG-1"))
    assert rejected["problem"]["status"] == 409
    assert rejected["current"]["cart"]["status"] == "checked_out"


async def test_the_same_form_field_edited_on_two_devices_is_a_conflict_with_its_value(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    phone, laptop = customer(client, auth)
    app = await phone.post("/v1/me/applications", {"form_type": "personal-loan"})
    app_id, seen = app["application_id"], app["version"]
    assert outcomes(await phone.sync(draft(app, {"first_name": "Ada"}))) == ["applied"]
    results = await laptop.sync(
        draft(app, {"first_name": "Augusta"}),
        draft(app, {"last_name": "Lovelace"}),  # another field: no conflict
        action("application", "submit", seen, target_id=app_id),  # stale: not what it saw
    )
    assert outcomes(results) == ["rejected", "applied", "rejected"]
    rejected = results[0]
    assert rejected["problem"]["status"] == 412
    assert rejected["problem"]["field"] == "identity.first_name"
    current = rejected["current"]
    assert current["target"] == "application"
    assert current["values"] == {"identity.first_name": "Ada"}
    assert current["version"] == results[1]["version"]
    assert results[2]["problem"]["field"] == "base_version"
    detail = (await client.get(f"/v1/me/applications/{app_id}", headers=phone.headers)).json()
    assert detail["answers"]["identity"] == {"first_name": "Ada", "last_name": "Lovelace"}


async def test_one_bad_action_never_rejects_the_others(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    phone, _ = customer(client, auth)
    app = await phone.post("/v1/me/applications", {"form_type": "personal-loan"})
    results = await phone.sync(
        action("cart", "add_item", **MUG),
        action("cart", "change_quantity", 0, sku="NOT-IN-CART", quantity=2),
        action("cart", "add_item", **{**TEA, "unit_price": "4.205"}),
        draft(app, {"no_such_field": "x"}),
        action("conversation", "say", 0, target_id=uuid4(), medium="app_chat", text="hi"),
        action("cart", "add_item", occurred_at=datetime.now(UTC) + timedelta(days=1), **TEA),
        action("cart", "add_item", **TEA),
    )
    assert outcomes(results) == ["applied", *["rejected"] * 5, "applied"]
    problems = [(r["problem"]["status"], r["problem"]["field"]) for r in results[1:6]]
    assert problems == [
        (404, "sku"),
        (422, "unit_price"),
        (422, "identity.no_such_field"),
        (404, "id"),
        (422, "occurred_at"),
    ]
    assert results[3]["problem"]["errors"][0]["field"] == "identity.no_such_field"
    assert results[4].get("current") is None
    cart = (await client.get("/v1/me/cart", headers=phone.headers)).json()
    assert {i["sku"] for i in cart["items"]} == {"MUG-1", "TEA-1"}


async def test_an_event_id_reused_for_another_action_is_rejected(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    phone, _ = customer(client, auth)
    key = uuid4()
    online = await client.post(
        "/v1/me/cart/items", json=MUG, headers={**phone.headers, "Idempotency-Key": str(key)}
    )
    assert online.status_code == 200
    position_of = await phone.sync(action("cart", "add_item", event_id=key, **MUG))
    assert outcomes(position_of) == ["duplicate"]  # sent online with that key: the same request
    other = uuid4()
    results = await phone.sync(
        action("cart", "add_item", event_id=key, **TEA),
        action("cart", "add_item", event_id=other, **TEA),
        action("cart", "add_item", event_id=other, **TEA),
        action("cart", "remove_item", 0, event_id=other, sku="TEA-1"),
    )
    assert outcomes(results) == ["rejected", "applied", "duplicate", "rejected"]
    for rejected in (results[0], results[3]):
        assert rejected["problem"]["type"].endswith("/idempotency-key-reused")
        assert rejected["problem"]["field"] == "event_id"
    assert results[2]["position"] == results[1]["position"]


async def test_a_batch_is_bounded(client: httpx.AsyncClient, auth: TokenFactory) -> None:
    phone, _ = customer(client, auth)
    too_many = [action("cart", "add_item", **MUG) for _ in range(MAX_BATCH + 1)]
    for actions in (too_many, []):
        answer = await client.post(SYNC, json={"actions": actions}, headers=phone.headers)
        assert answer.status_code == 400, answer.text
        assert answer.json()["field"] == "actions"
    wrong = action("conversation", "add_item", target_id=uuid4(), **MUG)
    answer = await client.post(SYNC, json={"actions": [wrong]}, headers=phone.headers)
    assert answer.status_code == 400


async def test_overlapping_batches_in_two_processes_at_once_record_each_action_once(
    serve: ClientFactory, auth: TokenFactory, runtime: Runtime
) -> None:
    subject = uuid4()
    phone = {**auth(subject, "phone"), "X-Channel": "app"}
    laptop = auth(subject, "laptop")
    first = [action("cart", "add_item", **{**MUG, "sku": f"SKU-{n}"}) for n in range(12)]
    second = [
        *first[6:],
        *(action("cart", "add_item", **{**MUG, "sku": f"NEW-{n}"}) for n in range(6)),
    ]
    async with serve() as one, serve() as two:
        answers = await asyncio.gather(
            one.post(SYNC, json={"actions": first}, headers=phone),
            two.post(SYNC, json={"actions": second}, headers=phone),
            two.post(SYNC, json={"actions": first}, headers=phone),
            one.post("/v1/me/cart/items", json=TEA, headers=laptop),
        )
    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    positions: dict[str, set[int]] = {}
    for answer in answers[:3]:
        for result in answer.json()["results"]:
            assert result["outcome"] in ("applied", "duplicate"), result
            positions.setdefault(result["event_id"], set()).add(result["position"])
    assert all(len(found) == 1 for found in positions.values())  # one position per action
    count = await runtime.pool.fetchval(
        "SELECT count(*) FROM events WHERE subject_id = $1", subject
    )
    assert count == 1 + 18 + 1  # the cart's opening, one event per distinct action, the tea
    cart = await runtime.carts.cart(subject)
    assert cart is not None
    assert cart.item_count == 19


async def test_queued_activity_applies_and_is_refused_without_personalization(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    phone, laptop = customer(client, auth)
    lamp = {"type": "viewed", "sku": "LAMP-3", "name": "Desk lamp"}
    viewed = action("activity", "record", 7, items=[lamp, {"type": "screen", "screen": "cart"}])
    results = await phone.sync(viewed, action("cart", "add_item", **MUG))
    assert outcomes(results) == ["applied", "applied"]  # base_version 7: activity never conflicts
    assert outcomes(await phone.sync(viewed)) == ["duplicate"]
    session = (await client.get("/v1/me/session", headers=laptop.headers)).json()
    assert [p["sku"] for p in session["recently_viewed"]] == ["LAMP-3"]

    results = await phone.sync(  # refused offline, then a search the refusal stops
        action("activity", "personalization", allowed=False),
        action("activity", "record", items=[{"type": "searched", "query": "lamp"}]),
        action("cart", "add_item", **TEA),
    )
    assert outcomes(results) == ["applied", "rejected", "applied"]
    assert results[1]["problem"]["type"].endswith("/consent-required")
    assert results[1]["current"] == {"target": "activity", "personalization": False}
    preferences = (await client.get("/v1/me/preferences", headers=laptop.headers)).json()
    assert preferences == {"personalization": False}
    session = (await client.get("/v1/me/session", headers=laptop.headers)).json()
    assert session["recent_searches"] == []
