"""Applications over HTTP: a loan application started on the phone at lunch is continued on the
laptop at home at the exact step with every answer; validation names each bad field; submit
waits for every step that applies; expiry; two devices and If-Match; agents are kept out."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest
from litestar import Litestar

from continuity.runtime import Runtime
from tests.helpers import TokenFactory
from tests.privacy.test_at_rest import table_bytes

pytestmark = pytest.mark.anyio

APPS = "/v1/me/applications"
SURNAME = "Quokkasdottir-Vellacourt"
IDENTITY = {
    "first_name": "Ada",
    "last_name": SURNAME,
    "date_of_birth": "1990-12-10",
    "email": "ada.vellacourt@example.com",
    "phone": "+353 1 555 0199",
    "address_line": "12 Merrion Square",
    "postal_code": "D02 X285",
    "city": "Dublin",
    "country": "IE",
}
EMPLOYMENT = {
    "status": "employed",
    "monthly_income": "3200",
    "monthly_expenses": "1100.00",
    "dependants": 1,
}
EMPLOYER = {"employer_name": "Analytical Engines Ltd", "years_employed": 4}
LOAN = {"amount": "12000", "term_months": "48", "purpose": "car"}
REVIEW = {"credit_check": True, "accurate": True}


class Customer:
    """One customer's devices: `phone` and `laptop` carry tokens for the same subject."""

    def __init__(self, client: httpx.AsyncClient, auth: TokenFactory) -> None:
        self.client = client
        self.id = uuid4()
        self.phone = auth(self.id, "phone")
        self.laptop = auth(self.id, "laptop")

    async def start(self, device: dict[str, str], form_type: str = "personal-loan") -> Any:
        answer = await self.client.post(APPS, json={"form_type": form_type}, headers=device)
        assert answer.status_code == 201, answer.text
        return answer.json()

    async def step(
        self,
        device: dict[str, str],
        app: UUID | str,
        step: str,
        values: dict[str, Any],
        *,
        draft: bool = False,
        if_match: int | None = None,
    ) -> httpx.Response:
        headers = dict(device)
        if if_match is not None:
            headers["If-Match"] = f'"{if_match}"'
        url = f"{APPS}/{app}/steps/{step}/{'draft' if draft else 'complete'}"
        send = self.client.patch if draft else self.client.post
        return await send(url, json={"values": values}, headers=headers)


async def test_started_on_the_phone_and_finished_on_the_laptop_at_the_same_step(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    me = Customer(client, auth)
    app = await me.start(me.phone)
    assert (app["status"], app["current_step"], app["version"]) == ("in_progress", "identity", 1)
    assert [s["name"] for s in app["form"]["steps"]][:2] == ["identity", "employment"]
    app_id = app["application_id"]
    assert (await me.step(me.phone, app_id, "identity", IDENTITY)).status_code == 200
    assert (await me.step(me.phone, app_id, "employment", EMPLOYMENT)).status_code == 200
    half = {"employer_name": "Analytical Engines Ltd"}
    assert (await me.step(me.phone, app_id, "employer", half, draft=True)).status_code == 200

    session = (await client.get("/v1/me/session", headers=me.laptop)).json()
    (resumed,) = session["applications"]
    assert resumed["application_id"] == app_id
    assert resumed["current_step"] == "employer"
    assert [(s["name"], s["status"]) for s in resumed["steps"]] == [
        ("identity", "completed"),
        ("employment", "completed"),
        ("employer", "to_do"),
        ("loan", "to_do"),
        ("review", "to_do"),
    ]
    assert resumed["answers"]["identity"] == IDENTITY
    assert resumed["answers"]["employment"]["monthly_income"] == "3200.00"
    assert resumed["answers"]["employer"] == half
    assert resumed["activity"][0]["device"] == "phone"

    read = await client.get(f"{APPS}/{app_id}", headers=me.laptop)
    assert read.headers["ETag"] == f'"{read.json()["version"]}"'
    assert read.json()["drafts"] == {"employer": half}
    unchanged = await client.get(
        f"{APPS}/{app_id}", headers={**me.laptop, "If-None-Match": read.headers["ETag"]}
    )
    assert unchanged.status_code == 304

    rest = {"years_employed": 4}
    assert (await me.step(me.laptop, app_id, "employer", rest)).status_code == 200
    assert (await me.step(me.laptop, app_id, "loan", LOAN)).status_code == 200
    assert (await me.step(me.laptop, app_id, "review", REVIEW)).status_code == 200
    submitted = await client.post(f"{APPS}/{app_id}/submit", headers=me.laptop)
    assert submitted.status_code == 200, submitted.text
    assert submitted.json()["status"] == "submitted"
    assert submitted.json()["completed"]["employer"] == EMPLOYER
    listed = (await client.get(APPS, headers=me.phone)).json()
    assert [(a["application_id"], a["status"]) for a in listed] == [(app_id, "submitted")]
    assert (await client.get("/v1/me/session", headers=me.phone)).json()["applications"] == []


async def test_every_bad_field_is_named_and_no_answer_is_repeated(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    me = Customer(client, auth)
    app_id = (await me.start(me.phone))["application_id"]
    bad = {
        **IDENTITY,
        "email": "quokka-at-nowhere",
        "date_of_birth": "2015-02-30",
        "country": "Atlantis",
    }
    del bad["city"]
    refused = await me.step(me.phone, app_id, "identity", bad)
    assert refused.status_code == 422
    assert refused.headers["content-type"] == "application/problem+json"
    problem = refused.json()
    assert problem["type"].endswith("/invalid-answers")
    assert problem["field"] == "identity.date_of_birth"
    assert {e["field"]: e["message"] for e in problem["errors"]} == {
        "identity.date_of_birth": "must be a date (YYYY-MM-DD)",
        "identity.email": "is not an email address",
        "identity.city": "is required",
        "identity.country": "is not a choice",
    }
    assert "quokka-at-nowhere" not in refused.text
    assert "Atlantis" not in refused.text
    unknown = await me.step(me.phone, app_id, "identity", {"salary": "1"}, draft=True)
    assert unknown.status_code == 422
    assert unknown.json()["errors"] == [
        {"field": "identity.salary", "source": "body", "message": "is not a field of this step"}
    ]
    out_of_order = await me.step(me.phone, app_id, "loan", LOAN)
    assert out_of_order.status_code == 409
    assert "complete identity, employment, employer before loan" in out_of_order.json()["detail"]


async def test_submit_waits_for_each_step_that_applies_and_a_retiree_skips_the_employer(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    me = Customer(client, auth)
    app_id = (await me.start(me.phone))["application_id"]
    await me.step(me.phone, app_id, "identity", IDENTITY)
    early = await client.post(f"{APPS}/{app_id}/submit", headers=me.phone)
    assert early.status_code == 422
    assert [e["field"] for e in early.json()["errors"]] == [
        "employment",
        "employer",
        "loan",
        "review",
    ]
    retired = {**EMPLOYMENT, "status": "retired"}
    answered = await me.step(me.phone, app_id, "employment", retired)
    assert answered.json()["current_step"] == "loan"
    statuses = {s["name"]: s["status"] for s in answered.json()["steps"]}
    assert statuses["employer"] == "skipped"
    await me.step(me.phone, app_id, "loan", LOAN)
    await me.step(me.phone, app_id, "review", REVIEW)
    back = await client.post(f"{APPS}/{app_id}/back", json={"step": "employment"}, headers=me.phone)
    assert back.json()["current_step"] == "employment"
    await me.step(me.phone, app_id, "employment", EMPLOYMENT)
    again = await client.post(f"{APPS}/{app_id}/submit", headers=me.phone)
    assert again.status_code == 422
    assert [e["field"] for e in again.json()["errors"]] == ["employer"]
    await me.step(me.phone, app_id, "employer", EMPLOYER)
    done = await client.post(f"{APPS}/{app_id}/submit", headers=me.phone)
    assert done.status_code == 200
    assert done.json()["status"] == "submitted"


async def test_two_devices_a_stale_step_is_412_but_a_draft_of_untouched_fields_is_saved(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    me = Customer(client, auth)
    app = await me.start(me.phone)
    app_id, seen = app["application_id"], app["version"]
    draft = {"first_name": "Ada", "city": "Dublin"}
    assert (await me.step(me.phone, app_id, "identity", draft, draft=True)).status_code == 200

    stale = await me.step(me.laptop, app_id, "identity", IDENTITY, if_match=seen)
    assert stale.status_code == 412
    problem = stale.json()
    assert problem["current_version"] == seen + 1
    assert stale.headers["ETag"] == f'"{seen + 1}"'
    assert problem["current"]["drafts"] == {"identity": draft}

    elsewhere = {"phone": "+353 1 555 0100", "email": "ada@example.ie"}
    merged = await me.step(me.laptop, app_id, "identity", elsewhere, draft=True, if_match=seen)
    assert merged.status_code == 200, merged.text
    assert merged.json()["drafts"]["identity"] == {**draft, **elsewhere}

    overlapping = {"city": "Cork"}
    clash = await me.step(me.laptop, app_id, "identity", overlapping, draft=True, if_match=seen)
    assert clash.status_code == 412
    assert clash.json()["current"]["drafts"]["identity"]["city"] == "Dublin"


async def test_an_idle_application_expires_and_then_refuses_every_change(
    client: httpx.AsyncClient, auth: TokenFactory, app: Litestar
) -> None:
    me = Customer(client, auth)
    app_id = (await me.start(me.phone))["application_id"]
    runtime: Runtime = app.state.runtime
    later = datetime.now(UTC) + timedelta(days=runtime.settings.application_idle_days, hours=1)
    runtime.applications.clock = lambda: later
    expired = await me.step(me.phone, app_id, "identity", IDENTITY)
    assert expired.status_code == 409
    assert expired.json()["type"].endswith("/application-expired")
    read = (await client.get(f"{APPS}/{app_id}", headers=me.phone)).json()
    assert read["status"] == "expired"
    for url in (f"{APPS}/{app_id}/submit", f"{APPS}/{app_id}/withdraw"):
        refused = await client.post(url, headers=me.phone)
        assert refused.status_code == 409
        assert refused.json()["type"].endswith("/application-expired")
    listed = (await client.get(APPS, headers=me.phone)).json()
    assert listed[0]["status"] == "expired"


async def test_a_retried_start_opens_one_application(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    me = Customer(client, auth)
    headers = {**me.phone, "Idempotency-Key": str(uuid4())}
    first = await client.post(APPS, json={"form_type": "bank-account"}, headers=headers)
    again = await client.post(APPS, json={"form_type": "bank-account"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["application_id"] == again.json()["application_id"]
    assert len((await client.get(APPS, headers=me.phone)).json()) == 1
    other = await client.post(APPS, json={"form_type": "personal-loan"}, headers=headers)
    assert other.status_code == 422
    assert other.json()["type"].endswith("/idempotency-key-reused")
    unknown = await client.post(APPS, json={"form_type": "mortgage"}, headers=me.phone)
    assert unknown.status_code == 404
    assert "bank-account, personal-loan" in unknown.json()["detail"]


async def test_agents_cannot_use_a_customers_routes_nor_read_anothers_application(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    me = Customer(client, auth)
    app_id = (await me.start(me.phone))["application_id"]
    agent = auth(uuid4(), None, "agent")
    for answer in (
        await client.get(APPS, headers=agent),
        await client.post(APPS, json={"form_type": "personal-loan"}, headers=agent),
        await client.get(f"{APPS}/{app_id}", headers=agent),
    ):
        assert answer.status_code == 403
    stranger = auth(uuid4(), "phone")
    assert (await client.get(f"{APPS}/{app_id}", headers=stranger)).status_code == 404
    taken = await client.post(f"{APPS}/{app_id}/withdraw", headers=stranger)
    assert taken.status_code == 404


async def test_answers_are_nowhere_in_clear_at_rest_nor_in_the_logs(
    client: httpx.AsyncClient,
    auth: TokenFactory,
    database_url: str,
    schema: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    me = Customer(client, auth)
    app_id = (await me.start(me.phone))["application_id"]
    await me.step(me.phone, app_id, "identity", IDENTITY)
    await me.step(me.phone, app_id, "employment", {"status": "employed"}, draft=True)
    bad = await me.step(me.phone, app_id, "employment", {"monthly_income": SURNAME})
    assert bad.status_code == 422
    conn = await asyncpg.connect(database_url)
    try:
        scanned = await table_bytes(conn, schema)
    finally:
        await conn.close()
    for value in (SURNAME, IDENTITY["email"], "Analytical", "Merrion"):
        needle = str(value).lower().encode()
        for name, data in scanned:
            assert needle not in data.lower(), f"{value!r} found in clear in {name}"
        assert str(value) not in caplog.text
