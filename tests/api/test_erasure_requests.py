"""Erasure requests over HTTP: a compliance officer asks for a subject's erasure (by id, email or
phone), reads its state and its signed certificate; a legal hold blocks it until lifted; a
customer asks for their own; a request a crash left unfinished is taken up again."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import msgspec
import pytest

from continuity.erasure_requests import REQUESTS_KEY, STALE_AFTER
from continuity.runtime import Runtime
from privacy.certificates import SignedCertificate, verify
from privacy.master_key import SignatureInvalid
from tests.conftest import AppFactory, client_of
from tests.helpers import MUG, TokenFactory
from tests.privacy.test_at_rest import table_bytes

pytestmark = pytest.mark.anyio

ERASURES = "/v1/privacy/erasures"
EMAIL = "Ada.Quokka-Erasure@example.org"
REASON = "Letter from Ada Zanzibarova of 3 May asking to be forgotten"
REFERENCE = "PRIV-77313"
HOLD_REASON = "Litigation Zanzibarova v. Shop, keep everything"


def officer(auth: TokenFactory, officer_id: UUID | None = None) -> dict[str, str]:
    return auth(officer_id or uuid4(), None, "compliance")


def hold_of(subject: UUID) -> str:
    return f"/v1/privacy/subjects/{subject}/hold"


async def a_customer(client: httpx.AsyncClient, auth: TokenFactory, email: str = EMAIL) -> UUID:
    """A customer with a cart and a registered email address."""
    customer = uuid4()
    me = auth(customer)
    assert (await client.post("/v1/me/cart/items", json=MUG, headers=me)).status_code == 200
    body = {"kind": "email", "value": email}
    assert (await client.post("/v1/me/identifiers", json=body, headers=me)).status_code == 200
    return customer


def at(value: str | None) -> datetime:
    assert value is not None
    return datetime.fromisoformat(value)


async def test_an_officers_request_by_id_completes_and_asking_again_answers_it(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    customer = await a_customer(client, auth)
    officer_id = uuid4()
    body = {"subject_id": str(customer), "reason": REASON, "reference": REFERENCE}
    created = await client.post(ERASURES, json=body, headers=officer(auth, officer_id))
    assert created.status_code == 201, created.text
    request = created.json()
    assert request["state"] == "completed"
    assert request["subject_id"] == str(customer)
    assert request["requested_by"] == {
        "role": "compliance",
        "id": str(officer_id),
        "device_id": None,
        "device": None,
    }
    assert (request["reason"], request["reference"]) == (REASON, REFERENCE)
    assert request["attempts"] == 1
    received, executing = at(request["received_at"]), at(request["executing_at"])
    assert received <= executing <= at(request["completed_at"])
    assert request["blocked_at"] is None
    assert request["failed_at"] is None
    assert request["certificate"] == f"{ERASURES}/{request['request_id']}/certificate"
    gone = await client.get("/v1/me/session", headers=auth(customer))
    assert gone.status_code == 410

    again = await client.post(ERASURES, json={"subject_id": str(customer)}, headers=officer(auth))
    assert again.status_code == 200, again.text
    assert again.json() == request
    # The email no longer leads to the customer (it is suppressed), but to their request.
    by_email = await client.post(ERASURES, json={"email": EMAIL.upper()}, headers=officer(auth))
    assert by_email.status_code == 200, by_email.text
    assert by_email.json()["request_id"] == request["request_id"]
    read = await client.get(f"{ERASURES}/{request['request_id']}", headers=officer(auth))
    assert read.status_code == 200
    assert read.json() == request


async def test_an_officers_request_by_email_finds_the_customer_by_keyed_hash(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    customer = await a_customer(client, auth)
    other = await a_customer(client, auth, "someone.else@example.org")
    created = await client.post(ERASURES, json={"email": EMAIL.upper()}, headers=officer(auth))
    assert created.status_code == 201, created.text
    assert created.json()["subject_id"] == str(customer)
    assert created.json()["state"] == "completed"
    assert (await client.get("/v1/me/session", headers=auth(customer))).status_code == 410
    assert (await client.get("/v1/me/session", headers=auth(other))).status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"email": "nobody.here@example.org"}, 404, "email"),
        ({"phone": "+4915112345678"}, 404, "phone"),
        ({"subject_id": "6a1f7a52-25a4-4b51-a3d2-1f0c4e2b9d01"}, 404, "subject_id"),
        ({"email": "not-an-address"}, 422, "email"),
        ({"email": "a@example.org", "phone": "+4915112345678"}, 422, "phone"),
        ({}, 422, "subject_id"),
        ({"subject_id": "not-a-uuid"}, 400, "subject_id"),
        ({"subject_id": str(uuid4()), "reason": "x" * 501}, 400, "reason"),
        ({"subject_id": str(uuid4()), "colour": "red"}, 400, "colour"),
    ],
)
async def test_a_bad_or_unknown_target_is_a_problem_naming_the_field(
    client: httpx.AsyncClient,
    auth: TokenFactory,
    runtime: Runtime,
    body: dict[str, Any],
    status: int,
    field: str,
) -> None:
    answer = await client.post(ERASURES, json=body, headers=officer(auth))
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["field"] == field
    assert await runtime.pool.fetchval("SELECT count(*) FROM erasure_requests") == 0


async def test_the_list_filters_by_state_and_pages(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    completed = []
    for n in range(3):
        customer = await a_customer(client, auth, f"list-{n}@example.org")
        made = await client.post(
            ERASURES, json={"subject_id": str(customer)}, headers=officer(auth)
        )
        completed.append(made.json()["request_id"])
    held = await a_customer(client, auth, "held@example.org")
    placed = await client.put(hold_of(held), json={"reason": HOLD_REASON}, headers=officer(auth))
    assert placed.status_code == 200, placed.text
    blocked = await client.post(ERASURES, json={"subject_id": str(held)}, headers=officer(auth))
    assert blocked.json()["state"] == "blocked"

    async def page(**params: Any) -> dict[str, Any]:
        answer = await client.get(ERASURES, params=params, headers=officer(auth))
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found

    first = await page(state="completed", limit=2)
    assert [r["request_id"] for r in first["items"]] == completed[::-1][:2]  # newest first
    assert first["next_cursor"]
    rest = await page(state="completed", limit=2, cursor=first["next_cursor"])
    assert [r["request_id"] for r in rest["items"]] == completed[:1]
    assert rest["next_cursor"] is None
    only_blocked = await page(state="blocked")
    assert [r["request_id"] for r in only_blocked["items"]] == [blocked.json()["request_id"]]
    assert only_blocked["items"][0]["hold_reason"] == HOLD_REASON
    assert len((await page())["items"]) == 4
    assert (await page(state="failed"))["items"] == []
    bad = await client.get(ERASURES, params={"cursor": "nonsense"}, headers=officer(auth))
    assert bad.status_code == 400
    assert bad.json()["field"] == "cursor"
    wrong = await client.get(ERASURES, params={"state": "done"}, headers=officer(auth))
    assert wrong.status_code == 400
    assert wrong.json()["field"] == "state"


async def test_the_certificate_verifies_names_the_request_and_fails_when_altered(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    customer = await a_customer(client, auth)
    request = (
        await client.post(ERASURES, json={"subject_id": str(customer)}, headers=officer(auth))
    ).json()
    answer = await client.get(request["certificate"], headers=officer(auth))
    assert answer.status_code == 200, answer.text
    signed = msgspec.json.decode(answer.content, type=SignedCertificate)
    key = (await client.get("/.well-known/continuity-signing-key")).json()["public_key_pem"]
    verify(signed, key)
    document = signed.certificate
    assert document["request_id"] == request["request_id"]
    assert document["subject_id"] == str(customer)
    assert document["requested_by"] == "compliance"
    assert at(document["requested_at"]) == at(request["received_at"])
    assert at(document["completed_at"]) == at(request["completed_at"])
    assert document["erasure"]["subject_id"] == str(customer)
    assert document["erasure"]["identifiers_suppressed"] == 1
    assert document["erasure"]["events_unreadable"] >= 1
    assert "continuity erasures reapply" in document["operator_must"]
    assert document["completed_at"] in document["operator_must"]
    assert EMAIL.lower() not in answer.text.lower()
    again = await client.get(request["certificate"], headers=officer(auth))
    assert again.content == answer.content  # the certificate as issued, every time

    raw = answer.content
    start = raw.index(b'"completed_at":"') + len(b'"completed_at":"')
    for index in (start, start + 5, raw.index(request["request_id"].encode()) + 3):
        altered = bytearray(raw)
        altered[index] = ord("1") if raw[index] != ord("1") else ord("2")
        with pytest.raises(SignatureInvalid):
            verify(msgspec.json.decode(bytes(altered), type=SignedCertificate), key)

    unknown = await client.get(f"{ERASURES}/{uuid4()}/certificate", headers=officer(auth))
    assert unknown.status_code == 404
    assert unknown.json()["field"] == "request_id"
    assert (await client.get(f"{ERASURES}/{uuid4()}", headers=officer(auth))).status_code == 404


async def test_a_legal_hold_blocks_the_erasure_and_lifting_it_completes_it(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    customer = await a_customer(client, auth)
    me, officer_id = auth(customer), uuid4()
    hold = hold_of(customer)
    assert (await client.get(hold, headers=officer(auth))).status_code == 404
    placed = await client.put(hold, json={"reason": HOLD_REASON}, headers=officer(auth, officer_id))
    assert placed.status_code == 200, placed.text
    assert placed.json()["reason"] == HOLD_REASON
    assert placed.json()["placed_by"] == str(officer_id)
    assert (await client.get(hold, headers=officer(auth))).json() == placed.json()

    blocked = await client.post(ERASURES, json={"subject_id": str(customer)}, headers=officer(auth))
    assert blocked.status_code == 201, blocked.text
    request = blocked.json()
    assert request["state"] == "blocked"
    assert request["hold_reason"] == HOLD_REASON
    assert request["blocked_at"] is not None
    assert request["executing_at"] is None
    assert (await client.get("/v1/me/session", headers=me)).status_code == 200  # kept
    not_yet = await client.get(f"{ERASURES}/{request['request_id']}/certificate", headers=me)
    assert not_yet.status_code == 403  # a customer's token: not for privacy routes
    not_yet = await client.get(
        f"{ERASURES}/{request['request_id']}/certificate", headers=officer(auth)
    )
    assert not_yet.status_code == 409
    assert not_yet.json()["type"].endswith("/erasure-not-completed")
    again = await client.post(ERASURES, json={"subject_id": str(customer)}, headers=officer(auth))
    assert (again.status_code, again.json()["request_id"]) == (200, request["request_id"])

    lifted = await client.delete(hold, headers=officer(auth, officer_id))
    assert lifted.status_code == 200, lifted.text
    assert lifted.json()["lifted_by"] == str(officer_id)
    (resumed,) = lifted.json()["erasures"]
    assert resumed["request_id"] == request["request_id"]
    assert resumed["state"] == "completed"
    assert resumed["hold_reason"] is None
    assert at(resumed["blocked_at"]) <= at(resumed["executing_at"])
    assert (await client.get("/v1/me/session", headers=me)).status_code == 410
    assert (await client.get(hold, headers=officer(auth))).status_code == 404
    assert (await client.delete(hold, headers=officer(auth))).status_code == 404
    erased = await client.put(hold, json={"reason": "too late"}, headers=officer(auth))
    assert erased.status_code == 410
    unknown = await client.put(hold_of(uuid4()), json={"reason": "who?"}, headers=officer(auth))
    assert unknown.status_code == 404
    assert unknown.json()["field"] == "subject_id"


async def test_a_hold_on_a_linked_guest_blocks_the_customers_erasure(
    client: httpx.AsyncClient, auth: TokenFactory, runtime: Runtime
) -> None:
    customer = await a_customer(client, auth)
    guest = uuid4()
    assert (
        await client.post("/v1/me/cart/items", json=MUG, headers=auth(guest))
    ).status_code == 200
    await runtime.pool.execute(
        "INSERT INTO guests (subject_id, linked_to, linked_at) VALUES ($1, $2, now())",
        guest,
        customer,
    )
    placed = await client.put(hold_of(guest), json={"reason": HOLD_REASON}, headers=officer(auth))
    assert placed.status_code == 200
    blocked = await client.post(ERASURES, json={"subject_id": str(customer)}, headers=officer(auth))
    assert blocked.json()["state"] == "blocked"
    assert blocked.json()["hold_reason"] == HOLD_REASON
    lifted = await client.delete(hold_of(guest), headers=officer(auth))
    assert [r["state"] for r in lifted.json()["erasures"]] == ["completed"]
    assert (await client.get("/v1/me/session", headers=auth(guest))).status_code == 410


async def test_a_customers_own_request_is_executed_and_seen_by_an_officer(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    guest = await client.post("/v1/sessions", json={"device_name": "Marguerite's Pixel 9000"})
    assert guest.status_code == 201, guest.text
    session = guest.json()
    phone = {"Authorization": f"Bearer {session['token']}"}
    assert (await client.post("/v1/me/cart/items", json=MUG, headers=phone)).status_code == 200

    asked = await client.post("/v1/me/erasure", headers=phone)
    assert asked.status_code == 202, asked.text
    assert asked.headers["etag"]
    mine = asked.json()
    assert mine["state"] == "completed"
    assert set(mine) == {"request_id", "state", "received_at", "completed_at"}
    assert (await client.get("/v1/me/session", headers=phone)).status_code == 401  # device gone

    listed = await client.get(ERASURES, headers=officer(auth))
    (seen,) = listed.json()["items"]
    assert seen["request_id"] == mine["request_id"]
    assert seen["subject_id"] == session["subject_id"]
    assert seen["requested_by"] == {
        "role": "customer",
        "id": session["subject_id"],
        "device_id": session["device_id"],
        "device": session["device_id"],
    }
    # Idempotent: a token of theirs that still authenticates gets the same request back.
    again = await client.post("/v1/me/erasure", headers=auth(UUID(session["subject_id"])))
    assert again.status_code == 202
    assert again.json() == mine
    certificate = await client.get(seen["certificate"], headers=officer(auth))
    assert certificate.json()["certificate"]["requested_by"] == "customer"


async def test_a_request_left_executing_by_a_crash_is_taken_up_at_start_up(
    started: AppFactory, auth: TokenFactory
) -> None:
    async with started() as one, client_of(one) as client:
        crashed, fresh = await a_customer(client, auth), await a_customer(client, auth, "f@x.org")
        runtime: Runtime = one.state.runtime
        left = [uuid4(), uuid4()]
        key = await runtime.vault.system_key(REQUESTS_KEY)
        hour, now = timedelta(hours=1), timedelta(0)
        for request_id, subject, ago in ((left[0], crashed, hour), (left[1], fresh, now)):
            await runtime.pool.execute(
                "INSERT INTO erasure_requests (request_id, subject_id, state, requested_role,"
                " requested_by, key_version, received_at, executing_at, attempts)"
                " VALUES ($1, $2, 'executing', 'compliance', $3, $4, now() - $5::interval,"
                " now() - $5::interval, 1)",
                request_id,
                subject,
                uuid4(),
                key.version,
                ago,
            )
        assert await runtime.erasures.resume_stale() == 1  # the fresh one is someone's, live
        await runtime.pool.execute(
            "UPDATE erasure_requests SET state = 'executing', executing_at = now() - $2::interval,"
            " completed_at = NULL, certificate = NULL WHERE request_id = $1",
            left[0],
            STALE_AFTER * 2,
        )  # as if the process had died again, mid-erasure
    async with started() as two, client_of(two) as client:  # its start-up takes it up
        for _ in range(500):
            answer = await client.get(f"{ERASURES}/{left[0]}", headers=officer(auth))
            if answer.json()["state"] == "completed":
                break
            await asyncio.sleep(0.02)
        request = answer.json()
        assert request["state"] == "completed", request
        assert request["attempts"] == 3
        certificate = await client.get(request["certificate"], headers=officer(auth))
        assert certificate.json()["certificate"]["erasure"]["already_erased"] is True
        assert (await client.get("/v1/me/session", headers=auth(crashed))).status_code == 410
        still = await client.get(f"{ERASURES}/{left[1]}", headers=officer(auth))
        assert still.json()["state"] == "executing"  # not stale: not taken from its process
        assert (await client.get("/v1/me/session", headers=auth(fresh))).status_code == 200


async def test_agent_routes_answer_410_after_erasure_reads_and_writes(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    customer = await a_customer(client, auth)
    me = auth(customer)
    application = await client.post(
        "/v1/me/applications", json={"form_type": "bank-account"}, headers=me
    )
    assert application.status_code == 201, application.text
    application_id = application.json()["application_id"]
    opened = await client.post(
        "/v1/me/conversations", json={"medium": "app_chat", "text": "Hello"}, headers=me
    )
    assert opened.status_code == 201, opened.text
    conversation_id = opened.json()["conversation_id"]
    handed = await client.post(
        f"/v1/me/conversations/{conversation_id}/handoff", json={"reason": "human"}, headers=me
    )
    assert handed.status_code == 200, handed.text
    agent = {**auth(uuid4(), None, "agent"), "X-Purpose": "ticket 1: erasure check"}
    reads = [
        f"/v1/agent/customers/{customer}/session",
        f"/v1/agent/customers/{customer}/timeline",
        f"/v1/agent/applications/{application_id}",
        f"/v1/agent/conversations/{conversation_id}",
    ]
    for url in reads:
        assert (await client.get(url, headers=agent)).status_code == 200, url

    erased = await client.post(ERASURES, json={"subject_id": str(customer)}, headers=officer(auth))
    assert erased.json()["state"] == "completed"

    for url in reads:
        answer = await client.get(url, headers=agent)
        assert answer.status_code == 410, (url, answer.text)
        assert answer.json()["type"].endswith("/subject-erased")
    conversation = f"/v1/agent/conversations/{conversation_id}"
    writes: list[tuple[str, dict[str, Any] | None]] = [
        (f"{conversation}/accept", None),
        (f"{conversation}/turns", {"medium": "web_chat", "text": "Still there?"}),
        (f"{conversation}/resolve", None),
        (f"/v1/agent/customers/{customer}/identifiers", {"kind": "phone", "value": "+15550100"}),
    ]
    for url, body in writes:
        answer = await client.post(url, json=body, headers=agent)
        assert answer.status_code == 410, (url, answer.text)


async def test_suppression_lift_route_mirrors_the_cli(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    customer = await a_customer(client, auth)
    await client.post(ERASURES, json={"subject_id": str(customer)}, headers=officer(auth))
    someone = auth(uuid4())
    body = {"kind": "email", "value": EMAIL}
    refused = await client.post("/v1/me/identifiers", json=body, headers=someone)
    assert refused.status_code == 409

    suppressions = "/v1/privacy/suppressions"
    lifted = await client.request(
        "DELETE", suppressions, json={"email": EMAIL.lower()}, headers=officer(auth)
    )
    assert lifted.status_code == 204, lifted.text
    again = await client.request(
        "DELETE", suppressions, json={"email": EMAIL}, headers=officer(auth)
    )
    assert again.status_code == 404
    assert again.json()["field"] == "email"
    both = await client.request(
        "DELETE",
        suppressions,
        json={"email": EMAIL, "phone": "+4915112345678"},
        headers=officer(auth),
    )
    assert both.status_code == 422
    bad = await client.request(
        "DELETE", suppressions, json={"phone": "+12-34"}, headers=officer(auth)
    )
    assert (bad.status_code, bad.json()["field"]) == (422, "phone")
    taken = await client.post("/v1/me/identifiers", json=body, headers=someone)
    assert taken.status_code == 200, taken.text


async def test_customer_and_agent_tokens_may_not_use_privacy_routes(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    customer = await a_customer(client, auth)
    for headers in (auth(customer), auth(uuid4(), None, "agent"), auth(uuid4(), None, "service")):
        refused = await client.post(ERASURES, json={"subject_id": str(customer)}, headers=headers)
        assert refused.status_code == 403
        put = await client.put(hold_of(customer), json={"reason": "x"}, headers=headers)
        assert put.status_code == 403
    assert (await client.get("/v1/me/session", headers=auth(customer))).status_code == 200
    officer_on_me = await client.post("/v1/me/erasure", headers=officer(auth))
    assert officer_on_me.status_code == 403


async def test_no_reason_reference_hold_or_device_in_clear_at_rest(
    client: httpx.AsyncClient, auth: TokenFactory, database_url: str, schema: str
) -> None:
    customer = await a_customer(client, auth)
    held = await a_customer(client, auth, "held-at-rest@example.org")
    await client.put(hold_of(held), json={"reason": HOLD_REASON}, headers=officer(auth))
    for subject in (customer, held):
        body = {"subject_id": str(subject), "reason": REASON, "reference": REFERENCE}
        assert (await client.post(ERASURES, json=body, headers=officer(auth))).is_success
    device = "Marguerite's Zanzibar Phone"
    other = uuid4()
    assert (
        await client.post("/v1/me/cart/items", json=MUG, headers=auth(other, device))
    ).status_code == 200
    mine = await client.post("/v1/me/erasure", headers=auth(other, device))
    assert mine.json()["state"] == "completed"
    seen = (await client.get(ERASURES, headers=officer(auth))).json()["items"]
    assert {r["reason"] for r in seen} == {REASON, None}
    assert device in {r["requested_by"]["device"] for r in seen}

    conn = await asyncpg.connect(database_url)
    try:
        scanned = await table_bytes(conn, schema)
    finally:
        await conn.close()
    assert {"erasure_requests", "legal_holds"} <= {name for name, _ in scanned}
    for value in (REASON, REFERENCE, HOLD_REASON, device, EMAIL):
        for needle in (value.encode(), value.lower().encode(), value.encode().hex().encode()):
            for name, data in scanned:
                assert needle not in data.lower(), f"{value!r} in clear in {name}"


async def test_a_failed_erasure_says_so_and_a_new_request_may_try_again(
    client: httpx.AsyncClient,
    auth: TokenFactory,
    runtime: Runtime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    customer = await a_customer(client, auth)
    # A real failure inside the erasure's transaction: the tombstone's insert is refused.
    await runtime.pool.execute(
        "CREATE FUNCTION refuse_tombstone() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN RAISE EXCEPTION 'no tombstones today'; END $$;"
        " CREATE TRIGGER refuse_tombstone BEFORE INSERT ON erased_subjects"
        " FOR EACH ROW EXECUTE FUNCTION refuse_tombstone()"
    )
    failed = await client.post(ERASURES, json={"subject_id": str(customer)}, headers=officer(auth))
    assert failed.status_code == 201, failed.text
    assert failed.json()["state"] == "failed"
    assert failed.json()["failure"].startswith("the erasure raised RaiseError")
    assert failed.json()["failed_at"] is not None
    assert "erasure request" in caplog.text  # the log has the details
    assert (await client.get("/v1/me/session", headers=auth(customer))).status_code == 200
    await runtime.pool.execute("DROP TRIGGER refuse_tombstone ON erased_subjects")

    retried = await client.post(ERASURES, json={"subject_id": str(customer)}, headers=officer(auth))
    assert retried.status_code == 201, retried.text
    assert retried.json()["state"] == "completed"
    assert retried.json()["request_id"] != failed.json()["request_id"]
    states = await client.get(ERASURES, params={"state": "failed"}, headers=officer(auth))
    assert [r["request_id"] for r in states.json()["items"]] == [failed.json()["request_id"]]


async def test_no_hold_while_the_subjects_erasure_executes(
    client: httpx.AsyncClient, auth: TokenFactory, runtime: Runtime
) -> None:
    customer = await a_customer(client, auth)
    key = await runtime.vault.system_key(REQUESTS_KEY)
    await runtime.pool.execute(
        "INSERT INTO erasure_requests (request_id, subject_id, state, requested_role,"
        " requested_by, key_version, executing_at) VALUES ($1, $2, 'executing', 'compliance',"
        " $3, $4, now())",
        uuid4(),
        customer,
        uuid4(),
        key.version,
    )
    refused = await client.put(hold_of(customer), json={"reason": "now"}, headers=officer(auth))
    assert refused.status_code == 409, refused.text
    assert refused.json()["field"] == "subject_id"
    assert (await client.get(hold_of(customer), headers=officer(auth))).status_code == 404


async def test_two_requests_at_once_for_one_subject_make_one(
    client: httpx.AsyncClient, auth: TokenFactory, runtime: Runtime
) -> None:
    customer = await a_customer(client, auth)
    body = {"subject_id": str(customer)}
    answers = await asyncio.gather(
        *(client.post(ERASURES, json=body, headers=officer(auth)) for _ in range(4))
    )
    assert sorted(a.status_code for a in answers) == [200, 200, 200, 201]
    assert len({a.json()["request_id"] for a in answers}) == 1
    assert await runtime.pool.fetchval("SELECT count(*) FROM erasure_requests") == 1
    assert await runtime.pool.fetchval("SELECT count(*) FROM erased_subjects") == 1
