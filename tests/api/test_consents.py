"""The consent ledger through HTTP: give and withdraw with ETag and If-Match; the Global Privacy
Control signal recorded once, with its source; essential cannot be withdrawn; activity needs
personalization; compliance officers read the full history, after erasure too, and nobody else
does; the database holds no choice, policy or personal value in clear."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import pytest

from continuity.erasure import shred_subject
from continuity.errors import IntegrityViolation
from continuity.runtime import Runtime
from tests.helpers import TokenFactory
from tests.privacy.test_at_rest import table_bytes

pytestmark = pytest.mark.anyio

POLICY = "2026-01"
GPC = {"Sec-GPC": "1"}


def choice(given: bool, policy_version: str = POLICY, **more: Any) -> dict[str, Any]:
    return {"given": given, "policy_version": policy_version, **more}


def by_purpose(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["purpose"]: c for c in body["consents"]}


async def test_a_choice_round_trips_with_its_etag(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    phone = auth(uuid4(), "phone")
    before = await client.get("/v1/me/consents", headers=phone)
    assert before.status_code == 200, before.text
    assert before.headers["etag"] == '"0"'
    defaults = {p: (c["given"], c["default"]) for p, c in by_purpose(before.json()).items()}
    assert defaults == {
        "essential": (True, True),
        "personalization": (True, True),
        "marketing": (False, True),
        "analytics": (False, True),
        "sale_share": (False, True),
    }

    given = await client.put(
        "/v1/me/consents/marketing",
        json=choice(True),
        headers={**phone, "If-Match": '"0"', "X-Channel": "app"},
    )
    assert given.status_code == 200, given.text
    assert given.headers["etag"] == '"2"'  # the ledger's start and the choice
    answer = given.json()
    assert (answer["purpose"], answer["given"], answer["default"]) == ("marketing", True, False)
    assert (answer["policy_version"], answer["channel"], answer["source"]) == (
        POLICY,
        "app",
        "device",
    )
    assert answer["at"]

    stale = await client.put(
        "/v1/me/consents/marketing", json=choice(False), headers={**phone, "If-Match": '"0"'}
    )
    assert stale.status_code == 412, stale.text
    assert stale.headers["etag"] == '"2"'

    withdrawn = await client.put(
        "/v1/me/consents/marketing",
        json=choice(False, "2026-02"),
        headers={**phone, "If-Match": '"2"'},
    )
    assert withdrawn.status_code == 200, withdrawn.text
    assert withdrawn.headers["etag"] == '"3"'
    one = await client.get("/v1/me/consents/marketing", headers=phone)
    assert one.headers["etag"] == '"3"'
    assert (one.json()["given"], one.json()["policy_version"]) == (False, "2026-02")
    assert (
        await client.get("/v1/me/consents/marketing", headers={**phone, "If-None-Match": '"3"'})
    ).status_code == 304


async def test_several_purposes_at_once_all_or_none(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    phone = auth(uuid4(), "phone")
    both = {"consents": {"analytics": True, "sale_share": False}, "policy_version": POLICY}
    recorded = await client.put("/v1/me/consents", json=both, headers=phone)
    assert recorded.status_code == 200, recorded.text
    state = by_purpose(recorded.json())
    assert (state["analytics"]["given"], state["sale_share"]["given"]) == (True, False)
    assert recorded.json()["version"] == 3

    refused = await client.put(
        "/v1/me/consents",
        json={"consents": {"marketing": True, "essential": False}, "policy_version": POLICY},
        headers=phone,
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["field"] == "consents.essential"
    unknown = await client.put(
        "/v1/me/consents",
        json={"consents": {"marketing": True, "telepathy": True}, "policy_version": POLICY},
        headers=phone,
    )
    assert unknown.status_code == 422, unknown.text
    assert unknown.json()["field"] == "consents.telepathy"
    empty = await client.put(
        "/v1/me/consents", json={"consents": {}, "policy_version": POLICY}, headers=phone
    )
    assert empty.status_code == 422, empty.text
    assert empty.json()["field"] == "consents"
    after = await client.get("/v1/me/consents", headers=phone)
    assert after.headers["etag"] == '"3"', "a refused request records nothing"
    assert by_purpose(after.json())["marketing"]["given"] is False


async def test_essential_cannot_be_withdrawn(client: httpx.AsyncClient, auth: TokenFactory) -> None:
    phone = auth(uuid4(), "phone")
    refused = await client.put("/v1/me/consents/essential", json=choice(False), headers=phone)
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["field"] == "given"
    assert (await client.get("/v1/me/consents", headers=phone)).headers["etag"] == '"0"'
    unknown = await client.put("/v1/me/consents/telepathy", json=choice(True), headers=phone)
    assert unknown.status_code == 404, unknown.text
    assert unknown.json()["field"] == "purpose"
    bad_policy = await client.put(
        "/v1/me/consents/marketing", json=choice(True, "2026 01 ☃"), headers=phone
    )
    assert bad_policy.status_code == 422, bad_policy.text
    assert bad_policy.json()["field"] == "policy_version"


async def test_gpc_records_one_opt_out_with_its_source(
    client: httpx.AsyncClient, auth: TokenFactory, runtime: Runtime
) -> None:
    customer = uuid4()
    phone = auth(customer, "phone")
    first = await client.get("/v1/me/session", headers={**phone, **GPC})
    assert first.status_code == 200, first.text
    again = await client.get("/v1/me/consents", headers={**phone, **GPC})
    sale_share = by_purpose(again.json())["sale_share"]
    assert (sale_share["given"], sale_share["default"], sale_share["source"]) == (
        False,
        False,
        "gpc",
    )
    assert again.headers["etag"] == '"2"', "the second request records nothing"
    history = await runtime.consents.history(customer)
    assert [(p.purpose, p.given, p.source) for p in history] == [("sale_share", False, "gpc")]

    # Given again on purpose: the next request carrying the signal opts out again, once.
    regiven = await client.put("/v1/me/consents/sale_share", json=choice(True), headers=phone)
    assert regiven.status_code == 200, regiven.text
    await client.get("/v1/me/consents", headers={**phone, **GPC})
    await client.get("/v1/me/consents", headers={**phone, **GPC})
    history = await runtime.consents.history(customer)
    assert [(p.given, p.source) for p in history] == [
        (False, "gpc"),
        (True, "device"),
        (False, "gpc"),
    ]
    quiet = uuid4()
    await client.get("/v1/me/consents", headers={**auth(quiet, "phone"), "Sec-GPC": "0"})
    assert await runtime.consents.history(quiet) == []


async def test_activity_needs_personalization_consent(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    phone = auth(uuid4(), "phone")
    item = {"items": [{"type": "viewed", "sku": "MUG-1", "name": "Mug"}]}
    assert (await client.post("/v1/me/activity", json=item, headers=phone)).status_code == 200
    withdrawn = await client.put(
        "/v1/me/consents/personalization", json=choice(False), headers=phone
    )
    assert withdrawn.status_code == 200, withdrawn.text
    assert (await client.get("/v1/me/preferences", headers=phone)).json() == {
        "personalization": False
    }
    session = (await client.get("/v1/me/session", headers=phone)).json()
    assert (session["personalization"], session["recently_viewed"]) == (False, [])
    refused = await client.post("/v1/me/activity", json=item, headers=phone)
    assert refused.status_code == 403, refused.text
    assert refused.json()["purpose"] == "personalization"
    # The older preferences route writes the same ledger.
    allowed = await client.put("/v1/me/preferences", json={"personalization": True}, headers=phone)
    assert allowed.status_code == 200
    state = (await client.get("/v1/me/consents/personalization", headers=phone)).json()
    assert (state["given"], state["source"]) == (True, "preferences")
    assert (await client.post("/v1/me/activity", json=item, headers=phone)).status_code == 200


async def test_compliance_reads_the_full_history_after_erasure_too(
    client: httpx.AsyncClient, auth: TokenFactory, runtime: Runtime
) -> None:
    customer = uuid4()
    phone = auth(customer, "phone")
    await client.put("/v1/me/consents/analytics", json=choice(True), headers=phone)
    await client.put("/v1/me/consents/analytics", json=choice(False, "2026-02"), headers=phone)
    await client.get("/v1/me/session", headers={**phone, **GPC, "X-Channel": "web"})
    officer = auth(uuid4(), None, "compliance")
    path = f"/v1/privacy/subjects/{customer}/consents"

    def summary(answer: httpx.Response) -> list[tuple[str, bool, str | None, str, str]]:
        assert answer.status_code == 200, answer.text
        return [
            (p["purpose"], p["given"], p["policy_version"], p["channel"], p["source"])
            for p in answer.json()["proofs"]
        ]

    expected = [
        ("analytics", True, POLICY, "web", "device"),
        ("analytics", False, "2026-02", "web", "device"),
        ("sale_share", False, None, "web", "gpc"),
    ]
    assert summary(await client.get(path, headers=officer)) == expected
    await shred_subject(runtime.store, runtime.vault, customer)
    assert (await client.get("/v1/me/consents", headers=phone)).status_code == 410
    assert summary(await client.get(path, headers=officer)) == expected

    for role in ("customer", "agent", "service"):
        token = auth(customer if role == "customer" else uuid4(), "phone", role)
        assert (await client.get(path, headers=token)).status_code == 403, role
    assert (await client.get(path)).status_code == 401


async def test_no_choice_policy_or_personal_value_in_clear(
    client: httpx.AsyncClient,
    auth: TokenFactory,
    database_url: str,
    schema: str,
    runtime: Runtime,
) -> None:
    policy = "zebra-policy-7731"
    device = "Ottoline's Fairphone 4417"
    customer = uuid4()
    phone = auth(customer, device)
    body = {"consents": {"marketing": True, "sale_share": False}, "policy_version": policy}
    assert (await client.put("/v1/me/consents", json=body, headers=phone)).status_code == 200
    other = uuid4()
    conn = await asyncpg.connect(database_url, server_settings={"search_path": schema})
    try:
        scanned = await table_bytes(conn, schema)
        proofs = await conn.fetchval("SELECT count(*) FROM consent_proofs")
        for statement in (
            "UPDATE consent_proofs SET recorded_at = now()",
            "DELETE FROM consent_proofs",
            "TRUNCATE consent_proofs",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement)
        # A proof copied to another subject does not open: its sealing binds its clear columns.
        await conn.execute(
            "INSERT INTO consent_proofs (position, subject_id, recorded_at, key_version, proof)"
            " SELECT position + 1000000, $1, recorded_at, key_version, proof FROM consent_proofs"
            " WHERE subject_id = $2 ORDER BY position LIMIT 1",
            other,
            customer,
        )
    finally:
        await conn.close()
    with pytest.raises(IntegrityViolation):
        await runtime.consents.history(other)
    assert len(await runtime.consents.history(customer)) == 2
    assert proofs == 2
    everything = b"\n".join(data for _, data in scanned)
    assert str(customer).encode() in everything, "the scan must see the pseudonymous subject id"
    for value in (policy, device, "sale_share", "marketing"):
        for needle in (value.encode(), value.encode().hex().encode()):
            for name, data in scanned:
                assert needle not in data, f"{value!r} found in clear in {name}"


async def test_a_marketing_turn_needs_marketing_consent(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    me = auth(uuid4(), "laptop")
    opened = await client.post(
        "/v1/me/conversations", json={"medium": "web_chat", "text": "Hello?"}, headers=me
    )
    assert opened.status_code == 201, opened.text
    turns = f"/v1/service/conversations/{opened.json()['conversation_id']}/turns"
    bot = auth(uuid4(), None, "service")
    offer = {"medium": "web_chat", "text": "20% off kettles today!", "marketing": True}

    refused = await client.post(turns, json=offer, headers=bot)
    assert refused.status_code == 403, refused.text
    assert refused.json()["purpose"] == "marketing"
    plain = {"medium": "web_chat", "text": "How can I help?"}
    answered = await client.post(turns, json=plain, headers=bot)
    assert answered.status_code == 200, answered.text
    assert answered.json()["turns"] == 2, "the refused offer was not recorded"

    await client.put("/v1/me/consents/marketing", json=choice(True), headers=me)
    sent = await client.post(turns, json=offer, headers=bot)
    assert sent.status_code == 200, sent.text
    assert sent.json()["turns"] == 3
    await client.put("/v1/me/consents/marketing", json=choice(False), headers=me)
    assert (await client.post(turns, json=offer, headers=bot)).status_code == 403
