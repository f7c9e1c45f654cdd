"""Data-subject exports (`GET /v1/privacy/subjects/{id}/export`, `GET /v1/me/export`) and the
access audit (`GET /v1/privacy/audit`): the export holds every value the customer wrote, their
devices, the reads of their data with the purposes given, and the guest they signed in from;
the compliance export is audited itself; only compliance tokens reach `/v1/privacy`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import msgspec
import pytest

from aggregates.consent import PURPOSES
from continuity.erasure import shred_subject
from continuity.export import EVENT_PAGE, FORMAT, SubjectExport
from continuity.runtime import Runtime
from tests.api.test_activity import post, viewed
from tests.api.test_devices import bearer, guest
from tests.api.test_sign_in import link
from tests.helpers import TokenFactory
from tests.privacy.test_at_rest import table_bytes

pytestmark = pytest.mark.anyio

PURPOSE = "ticket Quillon-5521: she asked what we hold"
EXPORT_PURPOSE = "Art. 15 request Quillon-5521"
DEVICE_NAME = "Quillon's Pixel 9"
GUEST_ITEM: dict[str, Any] = {
    "sku": "KETTLE-7",
    "name": "Copper kettle",
    "unit_price": "39.90",
    "quantity": 1,
}
ITEM: dict[str, Any] = {
    "sku": "LAMP-3",
    "name": "Brass reading lamp",
    "unit_price": "64.25",
    "quantity": 2,
}
DRAFT = {"first_name": "Quillon", "last_name": "Vexmoor-Atherly"}
OPENING = "Hello, is the brass lamp dimmable?"
TURN = "And does it ship to Galway?"
VIEWED = ("ORB-9", "Glass orb")
EMAIL = "quillon.vexmoor@example.org"


def leaves(value: Any) -> Iterator[Any]:
    """Every scalar inside a JSON value."""
    if isinstance(value, dict):
        for item in value.values():
            yield from leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from leaves(item)
    else:
        yield value


def compliance(auth: TokenFactory, officer: UUID, purpose: str | None = EXPORT_PURPOSE) -> Any:
    headers = auth(officer, None, "compliance")
    if purpose is not None:
        headers["X-Purpose"] = purpose
    return headers


async def timeline_settled(runtime: Runtime, subject_id: UUID) -> None:
    """Wait until the timeline's runner has applied every event of the subject."""
    for _ in range(500):
        behind = await runtime.pool.fetchval(
            "SELECT count(*) FROM events e WHERE subject_id = $1 AND topic = ANY($2::text[])"
            " AND NOT EXISTS (SELECT FROM timeline t WHERE t.position = e.position)",
            subject_id,
            list(runtime.timeline.topics),
        )
        if behind == 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the timeline did not catch up")


class Story:
    """A guest's phone that signs in as a customer, and what each of them wrote."""

    def __init__(self, client: httpx.AsyncClient, auth: TokenFactory) -> None:
        self.client = client
        self.auth = auth
        self.customer = uuid4()
        self.agent = uuid4()
        self.guest_id = UUID(int=0)
        self.phone: dict[str, str] = {}
        self.application_id = ""
        self.conversation_id = ""

    async def tell(self) -> None:
        client = self.client
        session = await guest(client, DEVICE_NAME)
        self.guest_id = UUID(session["subject_id"])
        self.phone = bearer(session)
        assert (
            await client.post("/v1/me/cart/items", json=GUEST_ITEM, headers=self.phone)
        ).is_success
        linked = await link(client, session, self.customer)
        assert linked.status_code == 200, linked.text
        # The phone acts as the customer from here on.
        assert (await client.post("/v1/me/cart/items", json=ITEM, headers=self.phone)).is_success
        started = await client.post(
            "/v1/me/applications", json={"form_type": "bank-account"}, headers=self.phone
        )
        assert started.status_code == 201, started.text
        self.application_id = started.json()["application_id"]
        draft = await client.patch(
            f"/v1/me/applications/{self.application_id}/steps/personal/draft",
            json={"values": DRAFT},
            headers=self.phone,
        )
        assert draft.is_success, draft.text
        opened = await client.post(
            "/v1/me/conversations", json={"medium": "web_chat", "text": OPENING}, headers=self.phone
        )
        assert opened.status_code == 201, opened.text
        self.conversation_id = opened.json()["conversation_id"]
        turn = await client.post(
            f"/v1/me/conversations/{self.conversation_id}/turns",
            json={"medium": "web_chat", "text": TURN},
            headers=self.phone,
        )
        assert turn.is_success, turn.text
        looked = await post(client, self.phone, viewed(*VIEWED))
        assert looked.status_code == 200, looked.text
        registered = await client.post(
            "/v1/me/identifiers", json={"kind": "email", "value": EMAIL}, headers=self.phone
        )
        assert registered.status_code == 200, registered.text
        consented = await client.put(
            "/v1/me/consents/analytics",
            json={"given": True, "policy_version": "2026-11"},
            headers=self.phone,
        )
        assert consented.status_code == 200, consented.text
        read = await client.get(
            f"/v1/agent/customers/{self.customer}/session",
            headers={**self.auth(self.agent, None, "agent"), "X-Purpose": PURPOSE},
        )
        assert read.status_code == 200, read.text


@pytest.fixture
async def story(client: httpx.AsyncClient, auth: TokenFactory, runtime: Runtime) -> Story:
    told = Story(client, auth)
    await told.tell()
    await timeline_settled(runtime, told.customer)
    return told


def check_holds_what_was_written(document: dict[str, Any], story: Story) -> None:
    assert document["format"] == FORMAT
    assert document["version"] == 1
    assert document["subject_id"] == str(story.customer)
    msgspec.json.decode(msgspec.json.encode(document), type=SubjectExport)  # its schema
    mine, theirs = document["subjects"]
    assert (mine["subject_id"], mine["relation"]) == (str(story.customer), "subject")
    assert (theirs["subject_id"], theirs["relation"]) == (str(story.guest_id), "linked_guest")
    assert theirs["guest"]["linked_to"] == str(story.customer)

    payloads = [e["payload"] for e in mine["events"]]
    assert all(e["readable"] for e in mine["events"])
    written = set(leaves(payloads))
    for value in (*ITEM.values(), *DRAFT.values(), OPENING, TURN, *VIEWED):
        expected = str(Decimal(value)) if value == ITEM["unit_price"] else value
        assert expected in written, value
    added = [e for e in mine["events"] if e["topic"].endswith("Cart.ItemAdded")]
    assert [(e["payload"]["sku"], e["payload"]["quantity"]) for e in added] == [
        (ITEM["sku"], ITEM["quantity"])
    ]
    assert {e["channel"] for e in mine["events"]} >= {"app"}
    positions = [e["position"] for e in mine["events"]]
    assert positions == sorted(positions)
    guest_written = set(leaves([e["payload"] for e in theirs["events"]]))
    assert {GUEST_ITEM["sku"], GUEST_ITEM["name"]} <= guest_written

    session = mine["session"]
    assert {line["sku"] for line in session["cart"]["items"]} >= {ITEM["sku"], GUEST_ITEM["sku"]}
    (application,) = session["applications"]
    assert application["application_id"] == story.application_id
    assert set(DRAFT.values()) <= set(leaves(application))
    assert [a["application_id"] for a in mine["work_queues"]["applications"]] == [
        story.application_id
    ]
    assert [c["conversation_id"] for c in mine["work_queues"]["conversations"]] == [
        story.conversation_id
    ]
    consents = {c["purpose"]: c for c in mine["consents"]}
    assert set(consents) == set(PURPOSES)
    assert consents["analytics"]["given"] is True
    assert consents["analytics"]["recorded"] is True
    assert consents["analytics"]["policy_version"] == "2026-11"
    assert consents["marketing"]["recorded"] is False
    assert [(p["purpose"], p["given"]) for p in mine["consent_history"]] == [("analytics", True)]
    (device,) = mine["devices"]
    assert device["name"] == DEVICE_NAME
    assert device["revoked_at"] is None
    assert [i["kind"] for i in mine["identifiers"]] == ["email"]
    assert EMAIL not in msgspec.json.encode(document).decode()
    kinds = {entry["kind"] for entry in mine["timeline"]}
    assert {"cart.item_added", "conversation.turn_added", "application.draft_saved"} <= kinds
    turns = [t["summary"].get("text") for t in mine["timeline"] if t["kind"].startswith("conv")]
    assert TURN in turns
    read = [a for a in mine["access_audit"] if a["agent_id"] == str(story.agent)]
    assert [(a["purpose"], a["what"]) for a in read] == [
        (PURPOSE, "GET /v1/agent/customers/{customer_id}/session")
    ]


async def test_a_compliance_export_holds_everything_written_and_is_audited(
    client: httpx.AsyncClient,
    auth: TokenFactory,
    story: Story,
    database_url: str,
    schema: str,
) -> None:
    officer = uuid4()
    answer = await client.get(
        f"/v1/privacy/subjects/{story.customer}/export", headers=compliance(auth, officer)
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    assert "attachment" in answer.headers["content-disposition"]
    document = answer.json()
    check_holds_what_was_written(document, story)
    mine = document["subjects"][0]
    (exported,) = [a for a in mine["access_audit"] if a["agent_id"] == str(officer)]
    assert exported["purpose"] == EXPORT_PURPOSE
    assert exported["what"] == "GET /v1/privacy/subjects/{subject_id}/export"

    audit = await client.get(
        "/v1/privacy/audit",
        params={"agent_id": str(officer)},
        headers=compliance(auth, uuid4(), None),
    )
    assert audit.status_code == 200, audit.text
    (entry,) = audit.json()["items"]
    assert (entry["subject_id"], entry["purpose"]) == (str(story.customer), EXPORT_PURPOSE)
    conn = await asyncpg.connect(database_url, server_settings={"search_path": schema})
    try:
        scanned = await table_bytes(conn, schema)
    finally:
        await conn.close()
    for table, content in scanned:
        for clear in (EXPORT_PURPOSE, PURPOSE, DEVICE_NAME, TURN):
            assert clear.encode() not in content, (table, clear)


async def test_the_customers_own_export_is_the_same_data_with_a_weak_etag(
    client: httpx.AsyncClient, story: Story
) -> None:
    answer = await client.get("/v1/me/export", headers=story.phone)
    assert answer.status_code == 200, answer.text
    check_holds_what_was_written(answer.json(), story)
    etag = answer.headers["etag"]
    assert etag.startswith('W/"')
    same = await client.get("/v1/me/export", headers={**story.phone, "If-None-Match": etag})
    assert same.status_code == 304, same.text
    assert same.headers["etag"] == etag
    more = {**ITEM, "sku": "LAMP-4"}
    assert (await client.post("/v1/me/cart/items", json=more, headers=story.phone)).is_success
    changed = await client.get("/v1/me/export", headers={**story.phone, "If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    skus = {e["payload"].get("sku") for e in changed.json()["subjects"][0]["events"]}
    assert "LAMP-4" in skus


async def test_a_customer_exports_only_their_own_and_other_tokens_stay_out_of_privacy(
    client: httpx.AsyncClient, auth: TokenFactory, story: Story
) -> None:
    stranger = auth(uuid4())
    theirs = await client.get("/v1/me/export", headers=stranger)
    assert theirs.status_code == 200
    (part,) = theirs.json()["subjects"]
    assert (part["events"], part["devices"]) == ([], [])
    assert ITEM["name"] not in theirs.text
    routes = [f"/v1/privacy/subjects/{story.customer}/export", "/v1/privacy/audit"]
    for headers in (
        story.phone,
        {**auth(story.customer), "X-Purpose": PURPOSE},
        {**auth(uuid4(), None, "agent"), "X-Purpose": PURPOSE},
        {**auth(uuid4(), None, "service"), "X-Purpose": PURPOSE},
    ):
        for route in routes:
            refused = await client.get(route, headers=headers)
            assert refused.status_code == 403, (route, refused.text)
            assert ITEM["name"] not in refused.text
    officer = compliance(auth, uuid4(), None)
    assert (await client.get(routes[0], headers=officer)).status_code == 400  # no purpose
    nobody = await client.get(
        f"/v1/privacy/subjects/{uuid4()}/export", headers=compliance(auth, uuid4())
    )
    assert nobody.status_code == 404
    assert nobody.json()["field"] == "subject_id"


async def test_an_erased_subjects_export_is_gone_while_their_audit_remains(
    client: httpx.AsyncClient, auth: TokenFactory, runtime: Runtime, story: Story
) -> None:
    await shred_subject(runtime.store, runtime.vault, story.customer)
    officer = compliance(auth, uuid4())
    gone = await client.get(f"/v1/privacy/subjects/{story.customer}/export", headers=officer)
    assert gone.status_code == 410
    assert gone.json()["type"].endswith("/subject-erased")
    mine = await client.get("/v1/me/export", headers=auth(story.customer))
    assert mine.status_code == 410
    audit = await client.get(
        "/v1/privacy/audit", params={"subject_id": str(story.customer)}, headers=officer
    )
    assert [(i["agent_id"], i["purpose"]) for i in audit.json()["items"]] == [
        (str(story.agent), PURPOSE)
    ]


async def test_the_audit_filters_by_agent_subject_and_time_and_pages(
    client: httpx.AsyncClient, auth: TokenFactory, runtime: Runtime
) -> None:
    agents = [uuid4(), uuid4()]
    subjects = [uuid4(), uuid4()]
    for index in range(6):
        agent, subject = agents[index % 2], subjects[index // 3]
        await runtime.audit.record(agent, subject, "GET /v1/agent/x", f"purpose {index}")
    between = datetime.now(UTC)
    await asyncio.sleep(0.01)
    await runtime.audit.record(agents[0], subjects[0], "GET /v1/agent/x", "purpose 6")
    officer = compliance(auth, uuid4(), None)

    async def listed(**params: Any) -> list[str]:
        query = {k: str(v) for k, v in params.items()}
        found: list[str] = []
        cursor = None
        for _ in range(20):
            page = await client.get(
                "/v1/privacy/audit",
                params={**query, **({"cursor": cursor} if cursor else {})},
                headers=officer,
            )
            assert page.status_code == 200, page.text
            body = page.json()
            assert len(body["items"]) <= int(query.get("limit", 20))
            found += [item["purpose"] for item in body["items"]]
            cursor = body["next_cursor"]
            if cursor is None:
                return found
        raise AssertionError("the pages did not end")

    every = [f"purpose {i}" for i in range(7)]
    assert await listed(limit=2) == every[::-1]
    assert await listed(limit=3, order="oldest") == every
    assert await listed(agent_id=agents[1], order="oldest") == [
        "purpose 1",
        "purpose 3",
        "purpose 5",
    ]
    assert await listed(subject_id=subjects[1], limit=1) == ["purpose 5", "purpose 4", "purpose 3"]
    assert await listed(agent_id=agents[0], subject_id=subjects[0], order="oldest") == [
        "purpose 0",
        "purpose 2",
        "purpose 6",
    ]
    assert await listed(since=between.isoformat()) == ["purpose 6"]
    assert await listed(until=between.isoformat(), limit=4) == every[:6][::-1]
    later = (between + timedelta(days=1)).isoformat()
    assert await listed(since=later) == []

    for params, field in (
        ({"agent": str(agents[0])}, "agent"),
        ({"since": "2026-01-31T09:00:00"}, "since"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"limit": "0"}, "limit"),
    ):
        refused = await client.get("/v1/privacy/audit", params=params, headers=officer)
        assert refused.status_code == 400, (params, refused.text)
        assert refused.json()["field"] == field


async def test_a_long_history_streams_in_pages(
    client: httpx.AsyncClient, auth: TokenFactory, runtime: Runtime
) -> None:
    """More events than a page: every one arrives, in order, none twice."""
    me = auth(uuid4())
    actions = [viewed(f"SKU-{i}", f"Product {i}") for i in range(EVENT_PAGE + 30)]
    for start in range(0, len(actions), 50):
        answer = await post(client, me, *actions[start : start + 50])
        assert answer.status_code == 200, answer.text
    body = (await client.get("/v1/me/export", headers=me)).json()
    events = body["subjects"][0]["events"]
    skus = [e["payload"]["sku"] for e in events if e["topic"].endswith("ProductViewed")]
    assert skus == [a["sku"] for a in actions]
    assert len({e["position"] for e in events}) == len(events)


async def test_a_linked_guest_erased_on_their_own_shows_as_placeholders(
    client: httpx.AsyncClient, runtime: Runtime, story: Story
) -> None:
    await shred_subject(runtime.store, runtime.vault, story.guest_id)
    answer = await client.get("/v1/me/export", headers=story.phone)
    assert answer.status_code == 200, answer.text
    mine, theirs = answer.json()["subjects"]
    assert mine["events"]
    assert all(e["readable"] for e in mine["events"])
    assert theirs["erased_at"] is not None
    assert theirs["session"] is None
    assert theirs["events"]
    for event in theirs["events"]:
        assert (event["readable"], event["payload"], event["device"]) == (False, None, None)
        assert event["topic"].startswith("aggregates.")
    assert GUEST_ITEM["name"] not in msgspec.json.encode(theirs).decode()
