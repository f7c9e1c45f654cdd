"""A guest signs in (`POST /v1/me/link`): the link, what it moves, that it is harmless twice and
refused for a guest linked to someone else, and that erasing the customer erases the guest."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import jwt
import pytest

from api.auth import issue_token
from continuity.erasure import shred_subject
from continuity.runtime import Runtime
from tests.api.test_devices import bearer, code_of, guest, redeem
from tests.helpers import MUG, SECRET

pytestmark = pytest.mark.anyio


def idp_token(customer: UUID) -> str:
    """What the identity provider would give the customer (here: Continuity's own issuer)."""
    return issue_token(SECRET, customer, "customer", "laptop", timedelta(minutes=5))


async def link(client: httpx.AsyncClient, device: dict[str, Any], customer: UUID) -> httpx.Response:
    return await client.post(
        "/v1/me/link", json={"token": idp_token(customer)}, headers=bearer(device)
    )


async def test_a_guest_signs_in_and_their_cart_and_application_follow(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """The story: a guest fills a cart and starts an application on the phone, continues on
    the laptop through a handoff code, then signs in as a customer who had a cart already."""
    phone = await guest(client)
    laptop = (await redeem(client, await code_of(client, phone))).json()
    customer = uuid4()
    known = {"Authorization": idp_bearer(customer)}
    two_mugs = {**MUG, "quantity": 2}
    assert (await client.post("/v1/me/cart/items", json=two_mugs, headers=known)).is_success
    assert (await client.post("/v1/me/cart/items", json=MUG, headers=bearer(phone))).is_success
    tea = {"sku": "TEA-1", "name": "Green tea", "unit_price": "4.20", "quantity": 1}
    assert (await client.post("/v1/me/cart/items", json=tea, headers=bearer(laptop))).is_success
    started = await client.post(
        "/v1/me/applications", json={"form_type": "bank-account"}, headers=bearer(phone)
    )
    assert started.status_code == 201, started.text
    draft = await client.patch(
        f"/v1/me/applications/{started.json()['application_id']}/steps/personal/draft",
        json={"values": {"first_name": "Ada"}},
        headers=bearer(laptop),
    )
    assert draft.is_success, draft.text

    first = await link(client, phone, customer)
    assert first.status_code == 200, first.text
    linked = first.json()
    assert linked["subject_id"] == str(customer)
    assert linked["guest_id"] == phone["subject_id"]
    assert linked["merged"]["cart_lines_moved"] == 2
    moved = linked["merged"]["applications"]
    assert list(moved) == [started.json()["application_id"]]

    cart = (await client.get("/v1/me/cart", headers=bearer(laptop))).json()
    assert {(i["sku"], i["quantity"]) for i in cart["items"]} == {("MUG-1", 3), ("TEA-1", 1)}
    apps = (await client.get("/v1/me/applications", headers=known)).json()
    assert [(a["application_id"], a["current_step"]) for a in apps] == [
        (moved[started.json()["application_id"]], "personal")
    ]
    assert apps[0]["answers"]["personal"]["first_name"] == "Ada"

    again = await link(client, laptop, customer)
    assert again.status_code == 200, again.text
    assert again.json()["merged"]["already_merged"] is True
    cart = (await client.get("/v1/me/cart", headers=known)).json()
    assert {(i["sku"], i["quantity"]) for i in cart["items"]} == {("MUG-1", 3), ("TEA-1", 1)}


async def test_signing_in_moves_the_devices_to_the_customer_and_twice_is_harmless(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    phone = await guest(client)
    laptop = (await redeem(client, await code_of(client, phone))).json()
    customer = uuid4()

    first = await link(client, phone, customer)
    assert first.status_code == 200, first.text
    linked = first.json()
    assert linked["subject_id"] == str(customer)
    assert linked["guest_id"] == phone["subject_id"]

    for token in (bearer(phone), bearer(laptop), {"Authorization": f"Bearer {linked['token']}"}):
        session = await client.get("/v1/me/session", headers=token)
        assert session.json()["subject_id"] == str(customer)  # every paired device signed in
    devices = await client.get("/v1/me/devices", headers={"Authorization": idp_bearer(customer)})
    assert {d["name"] for d in devices.json()} == {"Pixel 8", "Laptop"}

    again = await link(client, phone, customer)
    assert again.status_code == 200, again.text
    assert again.json()["subject_id"] == str(customer)
    assert again.json()["guest_id"] == phone["subject_id"]
    assert await runtime.guests.linked_to(customer) == [UUID(phone["subject_id"])]


async def test_a_guest_linked_to_one_customer_cannot_be_linked_to_another(
    client: httpx.AsyncClient,
) -> None:
    phone = await guest(client)
    assert (await link(client, phone, uuid4())).status_code == 200
    refused = await link(client, phone, uuid4())
    assert refused.status_code == 409
    assert refused.json()["field"] == "token"


async def test_a_refused_sign_in_token_names_the_token_not_the_device(
    client: httpx.AsyncClient,
) -> None:
    phone = await guest(client)
    claims = {"sub": str(uuid4()), "iss": "continuity", "aud": "continuity", "role": "customer"}
    expired = jwt.encode({**claims, "device": "laptop", "exp": 1}, SECRET, "HS256")
    for token in (expired, "not-a-jwt", issue_token(SECRET, uuid4(), "agent", None, HOUR)):
        answer = await client.post("/v1/me/link", json={"token": token}, headers=bearer(phone))
        assert answer.status_code == 422, answer.text
        assert answer.json()["field"] == "token"
    assert (await client.get("/v1/me/session", headers=bearer(phone))).is_success


async def test_erasing_the_customer_erases_the_guests_linked_to_them(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    phone = await guest(client)
    added = await client.post("/v1/me/cart/items", json=MUG, headers=bearer(phone))
    assert added.is_success
    guest_id, customer = UUID(phone["subject_id"]), uuid4()
    assert (await link(client, phone, customer)).status_code == 200

    certificate = await shred_subject(runtime.store, runtime.vault, customer)

    assert certificate.linked_subjects == [guest_id]
    assert certificate.devices_removed == 1
    assert await runtime.vault.erased_among([guest_id, customer]) == {guest_id, customer}
    envelopes = await runtime.mapper.to_envelopes(await runtime.store.select_subject(guest_id))
    assert envelopes
    assert all(envelope.event is None for envelope in envelopes)  # placeholders only
    assert (await client.get("/v1/me/session", headers=bearer(phone))).status_code == 401
    rows = await runtime.pool.fetchval(
        "SELECT count(*) FROM devices WHERE subject_id = ANY($1::uuid[])", [guest_id, customer]
    )
    assert rows == 0


HOUR = timedelta(hours=1)


def idp_bearer(customer: UUID) -> str:
    return f"Bearer {idp_token(customer)}"
