"""The suppression list: an erased customer's email address (kept as a keyed hash only) no longer
leads to them, and nothing may take it up again (an inbound message, a registration) until a
compliance officer lifts the suppression."""

from __future__ import annotations

from uuid import uuid4

import httpx
import pytest

from continuity.erasure import shred_subject
from continuity.runtime import Runtime
from tests.helpers import TokenFactory

pytestmark = pytest.mark.anyio

ADDRESS = "ada.quokka-suppressed@example.org"


async def test_an_erased_customers_address_is_refused_until_lifted(
    client: httpx.AsyncClient, runtime: Runtime, auth: TokenFactory
) -> None:
    customer, gateway = uuid4(), auth(uuid4(), None, "service")
    me = auth(customer)
    body = {"kind": "email", "value": ADDRESS}
    assert (await client.post("/v1/me/identifiers", json=body, headers=me)).is_success
    email = {"channel": "email", "sender": ADDRESS.upper(), "text": "Where is my parcel?"}
    first = await client.post("/v1/service/inbound", json=email, headers=gateway)
    assert first.json()["subject_id"] == str(customer)

    certificate = await shred_subject(runtime.store, runtime.vault, customer)
    assert certificate.identifiers_suppressed == 1
    events = await runtime.pool.fetchval("SELECT count(*) FROM events")

    refused = await client.post("/v1/service/inbound", json=email, headers=gateway)
    assert refused.status_code == 409, refused.text
    assert refused.json()["type"].endswith("/identifier-suppressed")
    someone = auth(uuid4())
    taken = await client.post("/v1/me/identifiers", json=body, headers=someone)
    assert taken.status_code == 409
    assert taken.json()["type"].endswith("/identifier-suppressed")
    assert await runtime.pool.fetchval("SELECT count(*) FROM events") == events  # nothing new
    assert await runtime.identifiers.find("email", ADDRESS) is None  # no longer leads to them

    assert await runtime.identifiers.lift("email", ADDRESS)
    assert not await runtime.identifiers.lift("email", ADDRESS)  # lifted already
    back = await client.post("/v1/service/inbound", json=email, headers=gateway)
    assert back.status_code == 200, back.text
    assert back.json()["new_customer"] is True  # a new guest: nothing of the erased one
    assert back.json()["subject_id"] != str(customer)
    rows = [
        *await runtime.pool.fetch("SELECT * FROM identifiers"),
        *await runtime.pool.fetch("SELECT * FROM suppressed_identifiers"),
    ]
    dump = " ".join(str(value) for row in rows for value in row.values())
    assert "quokka" not in dump.lower()
