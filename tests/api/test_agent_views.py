"""What an agent sees of a customer: the same resume view, an application with its full history;
every read needs a purpose and leaves an audit entry that holds nothing personal in clear,
refuses change, and outlives the customer's erasure."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest
from litestar import Litestar

from continuity.erasure import shred_subject
from continuity.runtime import Runtime
from tests.api.test_applications import IDENTITY, Customer
from tests.helpers import TokenFactory
from tests.privacy.test_at_rest import table_bytes

pytestmark = pytest.mark.anyio

PURPOSE = "ticket Zebulon-4711: the customer asked about her loan"


def agent_headers(auth: TokenFactory, agent: UUID, purpose: str | None = PURPOSE) -> dict[str, str]:
    headers = auth(agent, None, "agent")
    if purpose is not None:
        headers["X-Purpose"] = purpose
    return headers


async def a_customer_mid_application(
    client: httpx.AsyncClient, auth: TokenFactory
) -> tuple[Customer, str]:
    me = Customer(client, auth)
    app_id = (await me.start(me.phone))["application_id"]
    assert (await me.step(me.phone, app_id, "identity", IDENTITY)).status_code == 200
    draft = {"status": "employed"}
    assert (await me.step(me.laptop, app_id, "employment", draft, draft=True)).status_code == 200
    return me, app_id


async def test_an_agent_sees_the_customers_resume_view_and_the_read_is_audited(
    client: httpx.AsyncClient, auth: TokenFactory, app: Litestar
) -> None:
    me, _ = await a_customer_mid_application(client, auth)
    agent = uuid4()
    seen = await client.get(
        f"/v1/agent/customers/{me.id}/session", headers=agent_headers(auth, agent)
    )
    assert seen.status_code == 200, seen.text
    theirs = await client.get("/v1/me/session", headers=me.phone)
    assert seen.json() == theirs.json()
    assert seen.json()["applications"][0]["current_step"] == "employment"
    runtime: Runtime = app.state.runtime
    (entry,) = await runtime.audit.of_subject(me.id)
    assert (entry.agent_id, entry.subject_id, entry.purpose, entry.resource_id) == (
        agent,
        me.id,
        PURPOSE,
        None,
    )
    assert entry.what == "GET /v1/agent/customers/{customer_id}/session"


async def test_an_agent_reads_an_application_with_its_whole_history(
    client: httpx.AsyncClient, auth: TokenFactory, app: Litestar
) -> None:
    me, app_id = await a_customer_mid_application(client, auth)
    agent = uuid4()
    read = await client.get(f"/v1/agent/applications/{app_id}", headers=agent_headers(auth, agent))
    assert read.status_code == 200, read.text
    body = read.json()
    assert body["subject_id"] == str(me.id)
    assert body["application"]["answers"]["identity"] == IDENTITY
    assert [(h["change"], h["step"], h["device"], h["actor_type"]) for h in body["history"]] == [
        ("Application.Started", None, "phone", "customer"),
        ("Application.StepCompleted", "identity", "phone", "customer"),
        ("Application.DraftSaved", "employment", "laptop", "customer"),
    ]
    assert body["history"][2]["values"] == {"status": "employed"}
    runtime: Runtime = app.state.runtime
    (entry,) = await runtime.audit.of_subject(me.id)
    assert entry.resource_id == UUID(app_id)
    assert entry.what == "GET /v1/agent/applications/{application_id}"
    missing = await client.get(
        f"/v1/agent/applications/{uuid4()}", headers=agent_headers(auth, agent)
    )
    assert missing.status_code == 404


async def test_a_read_without_a_purpose_is_refused_and_leaves_nothing(
    client: httpx.AsyncClient, auth: TokenFactory, app: Litestar
) -> None:
    me, app_id = await a_customer_mid_application(client, auth)
    for purpose in (None, "x"):
        refused = await client.get(
            f"/v1/agent/applications/{app_id}", headers=agent_headers(auth, uuid4(), purpose)
        )
        assert refused.status_code == 400
        assert refused.json()["field"] == "X-Purpose"
        assert IDENTITY["last_name"] not in refused.text
    runtime: Runtime = app.state.runtime
    assert await runtime.audit.of_subject(me.id) == []


async def test_customers_cannot_call_agent_routes(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    me, app_id = await a_customer_mid_application(client, auth)
    for url in (f"/v1/agent/customers/{me.id}/session", f"/v1/agent/applications/{app_id}"):
        answer = await client.get(url, headers={**me.phone, "X-Purpose": PURPOSE})
        assert answer.status_code == 403


async def test_the_audit_refuses_change_holds_no_purpose_in_clear_and_outlives_erasure(
    client: httpx.AsyncClient,
    auth: TokenFactory,
    app: Litestar,
    database_url: str,
    schema: str,
) -> None:
    me, app_id = await a_customer_mid_application(client, auth)
    agent = uuid4()
    assert (
        await client.get(f"/v1/agent/applications/{app_id}", headers=agent_headers(auth, agent))
    ).status_code == 200
    runtime: Runtime = app.state.runtime
    conn = await asyncpg.connect(database_url, server_settings={"search_path": schema})
    try:
        for statement in (
            "UPDATE access_audit SET what = 'nothing'",
            "DELETE FROM access_audit",
            "TRUNCATE access_audit",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement)
        scanned = await table_bytes(conn, schema)
    finally:
        await conn.close()
    for needle in (b"zebulon", IDENTITY["last_name"].lower().encode()):
        for name, data in scanned:
            assert needle not in data.lower(), f"{needle!r} in clear in {name}"

    await shred_subject(runtime.store, runtime.vault, me.id)
    (entry,) = await runtime.audit.of_subject(me.id)
    assert (entry.agent_id, entry.purpose) == (agent, PURPOSE)
    gone = await client.get(f"/v1/agent/applications/{app_id}", headers=agent_headers(auth, agent))
    assert gone.status_code == 410


async def test_the_work_queue_lists_applications_by_filter_and_page(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    me, app_id = await a_customer_mid_application(client, auth)
    other = Customer(client, auth)
    submitted_id = (await other.start(other.phone, "bank-account"))["application_id"]
    await client.post(f"/v1/agent/applications/{submitted_id}", headers=other.phone)
    withdrawn = await client.post(
        f"/v1/me/applications/{submitted_id}/withdraw", headers=other.phone
    )
    assert withdrawn.status_code == 200
    agent = auth(uuid4(), None, "agent")

    async def queue(**params: str) -> dict[str, Any]:
        answer = await client.get("/v1/agent/applications", params=params, headers=agent)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    for _ in range(1000):  # the projection's runner applies the log in the background
        items = (await queue())["items"]
        assert isinstance(items, list)
        if len(items) == 2 and {i["status"] for i in items} == {"in_progress", "withdrawn"}:
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the queue did not catch up")
    at_step = (await queue(current_step="employment", status="in_progress"))["items"]
    assert [(i["application_id"], i["subject_id"]) for i in at_step] == [(app_id, str(me.id))]
    assert (await queue(form_type="bank-account"))["items"][0]["status"] == "withdrawn"
    assert (await queue(idle_hours="1"))["items"] == []
    first = await queue(limit="1")
    assert len(first["items"]) == 1
    assert isinstance(first["next_cursor"], str)
    second = await queue(limit="1", cursor=first["next_cursor"])
    assert second["next_cursor"] is None
    assert IDENTITY["last_name"] not in str(first) + str(second)
    bad = await client.get("/v1/agent/applications", params={"cursor": "nonsense"}, headers=agent)
    assert bad.status_code == 400
    assert bad.json()["field"] == "cursor"
    customer = await client.get("/v1/agent/applications", headers=me.phone)
    assert customer.status_code == 403


async def test_idle_applications_are_swept_to_expired_and_the_queue_says_so(
    client: httpx.AsyncClient, auth: TokenFactory, app: Litestar
) -> None:
    me, app_id = await a_customer_mid_application(client, auth)
    agent = auth(uuid4(), None, "agent")
    runtime: Runtime = app.state.runtime

    async def queued(status: str) -> list[Any]:
        answer = await client.get(
            "/v1/agent/applications", params={"status": status}, headers=agent
        )
        items: list[Any] = answer.json()["items"]
        return items

    async def until_queued(status: str) -> None:
        for _ in range(1000):
            if [i["application_id"] for i in await queued(status)] == [app_id]:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"the queue never showed the application {status}")

    await until_queued("in_progress")
    assert await runtime.applications.sweep() == 0, "not idle yet"
    later = datetime.now(UTC) + timedelta(days=runtime.settings.application_idle_days, hours=1)
    runtime.applications.clock = lambda: later
    assert await runtime.applications.sweep() == 1
    assert await runtime.applications.sweep() == 0, "an application expires once"
    await until_queued("expired")
    read = await client.get(f"/v1/me/applications/{app_id}", headers=me.phone)
    assert read.json()["status"] == "expired"
    history = await client.get(
        f"/v1/agent/applications/{app_id}", headers=agent_headers(auth, uuid4())
    )
    last = history.json()["history"][-1]
    assert (last["change"], last["actor_type"], last["channel"]) == (
        "Application.ExpiredIdle",
        "system",
        "system",
    )
