"""The console in-process: sign-in and its cookie, CSRF, the security headers, who may open
what, and the agent's and officer's pages over real data (the browser tests in `tests/browser`
drive the same pages in Chromium)."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import msgspec
import pytest
from litestar import Litestar
from litestar.routes import HTTPRoute

from api.auth import Role, issue_token
from api.console.live import CatchUp
from api.console.security import CONTENT_SECURITY_POLICY
from continuity.runtime import Runtime
from continuity.timeline import TIMELINE
from privacy.certificates import SignedCertificate, verify
from tests.api.test_analytics import caught_up
from tests.conftest import AppFactory, client_of
from tests.console_scenario import KETTLE_NAME, QUESTION, REASON, SURNAME, journey
from tests.helpers import SECRET, TokenFactory

pytestmark = pytest.mark.anyio

CSRF = re.compile(r'name="_csrf_token" value="([^"]+)"')


def token(subject: UUID, role: Role, device: str | None = None) -> str:
    return issue_token(SECRET, subject, role, device, timedelta(hours=1))


async def csrf_of(client: httpx.AsyncClient, path: str = "/console/sign-in") -> str:
    page = await client.get(path)
    assert page.status_code == 200, page.text
    found = CSRF.search(page.text)
    assert found is not None, page.text
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, bearer: str) -> httpx.Response:
    csrf = await csrf_of(client)
    return await client.post("/console/sign-in", data={"token": bearer, "_csrf_token": csrf})


async def post_form(
    client: httpx.AsyncClient, page: str, action: str, fields: dict[str, str]
) -> httpx.Response:
    """Send a form the way the browser does: with the CSRF token the page carried."""
    return await client.post(action, data={**fields, "_csrf_token": await csrf_of(client, page)})


@pytest.fixture
async def app(started: AppFactory) -> AsyncIterator[Litestar]:
    """The app with its console (the suite's other apps are made without it)."""
    async with started(console=True) as served:
        yield served


@pytest.fixture
async def officer_client(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(app) as client:
        assert (await sign_in(client, token(uuid4(), "compliance"))).status_code == 303
        yield client


async def until(check: Any, what: str) -> Any:
    for _ in range(250):
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"never: {what}")


async def test_sign_in_keeps_the_token_in_an_httponly_strict_cookie_and_lands_by_role(
    client: httpx.AsyncClient,
) -> None:
    signed = await sign_in(client, token(uuid4(), "agent"))
    assert signed.status_code == 303, signed.text
    assert signed.headers["location"] == "/console/queue"
    cookie = next(
        c for c in signed.headers.get_list("set-cookie") if c.startswith("continuity_console=")
    )
    attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/console"} <= attributes
    assert any(a.startswith("max-age=") and 3500 < int(a[8:]) <= 3600 for a in attributes)
    assert "secure" not in attributes  # plain HTTP, not configured: a browser would drop it
    assert (await client.get("/console/queue")).status_code == 200
    assert (await client.get("/console")).headers["location"] == "/console/queue"

    officer = await sign_in(client, token(uuid4(), "compliance"))
    assert officer.headers["location"] == "/console/privacy"


async def test_cookies_are_secure_over_https_or_when_configured(
    started: AppFactory, app: Litestar
) -> None:
    secure = started(console=True, console_secure_cookies=True)
    async with secure as configured, client_of(configured) as plain:
        page = await plain.get("/console/sign-in")  # plain HTTP, behind a TLS-ending proxy
        assert "secure" in page.headers["set-cookie"].lower()  # the CSRF cookie
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="https://continuity.test") as tls:
        signed = await sign_in(tls, token(uuid4(), "agent"))
        assert signed.status_code == 303
        assert "secure" in signed.headers["set-cookie"].lower()


@pytest.mark.parametrize("role", ["customer", "service"])
async def test_only_agents_and_officers_may_sign_in(client: httpx.AsyncClient, role: Role) -> None:
    refused = await sign_in(client, token(uuid4(), role, "phone" if role == "customer" else None))
    assert refused.status_code == 403
    assert "for agents and compliance officers" in refused.text
    assert "continuity_console" not in client.cookies
    # A customer's token planted in the cookie by hand is refused on every page too.
    client.cookies.set("continuity_console", token(uuid4(), role, "phone"), path="/console")
    assert (await client.get("/console/queue")).status_code == 403
    assert (await client.get("/console/privacy")).status_code == 403


async def test_a_bad_token_is_refused_and_sets_nothing(client: httpx.AsyncClient) -> None:
    forged = issue_token("x" * 40, uuid4(), "agent", None, timedelta(hours=1))
    refused = await sign_in(client, forged)
    assert refused.status_code == 401
    assert "refused" in refused.text
    assert "continuity_console" not in client.cookies


async def test_pages_without_a_session_go_to_sign_in(client: httpx.AsyncClient) -> None:
    for path in ("/console", "/console/queue", f"/console/customers/{uuid4()}", "/console/privacy"):
        answer = await client.get(path)
        assert (answer.status_code, answer.headers["location"]) == (303, "/console/sign-in")
    fragment = await client.get("/console/queue/rows", headers={"HX-Request": "true"})
    assert (fragment.status_code, fragment.headers["hx-redirect"]) == (401, "/console/sign-in")
    # A bearer header is not a console session: the console reads its own cookie only.
    bearer = {"Authorization": f"Bearer {token(uuid4(), 'agent')}"}
    assert (await client.get("/console/queue", headers=bearer)).status_code == 303


async def test_every_form_needs_its_csrf_token(
    client: httpx.AsyncClient, auth: TokenFactory, runtime: Runtime
) -> None:
    seen = await journey(client, auth)
    assert (await sign_in(client, token(uuid4(), "agent"))).status_code == 303
    accept = f"/console/conversations/{seen.conversation}/accept"
    missing = await client.post(accept, data={"purpose": "support"})
    assert missing.status_code == 403
    assert "CSRF" in missing.text
    assert "text/html" in missing.headers["content-type"]
    wrong = await client.post(accept, data={"purpose": "support", "_csrf_token": "0" * 128})
    assert wrong.status_code == 403
    # Without the cookie half of the pair (another site's form cannot send it), refused too.
    good = await csrf_of(client, "/console/queue")
    del client.cookies["continuity_csrf"]
    assert (
        await client.post(accept, data={"purpose": "support", "_csrf_token": good})
    ).status_code == 403
    conversation = await runtime.conversations.get(seen.conversation)
    assert conversation.status == "waiting"  # none of them did anything
    # Signing in is a form too (login CSRF).
    assert (await client.post("/console/sign-in", data={"token": "x"})).status_code == 403


async def test_every_page_sends_a_strict_content_security_policy(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
    assert "'unsafe-eval'" not in CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    seen = await journey(client, auth)
    pages = ["/console/sign-in"]
    assert (await sign_in(client, token(uuid4(), "agent"))).status_code == 303
    pages += [
        "/console/queue",
        f"/console/customers/{seen.customer}",
        f"/console/customers/{seen.customer}?purpose=support",
        "/console/privacy",  # refused to an agent: an error page has the headers too
    ]
    for path in pages:
        page = await client.get(path)
        assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path
        assert page.headers["cache-control"] == "no-store", path
        assert page.headers["x-frame-options"] == "DENY", path
        assert page.headers["referrer-policy"] == "no-referrer", path
        html = page.text
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), f"inline script on {path}"
        assert not re.search(r"\sstyle=", html), f"inline style on {path}"
        assert not re.search(r"\son[a-z]+=", html), f"inline handler on {path}"
        assert "hx-on" not in html, path


async def test_agents_and_officers_each_see_only_their_pages(
    client: httpx.AsyncClient, officer_client: httpx.AsyncClient
) -> None:
    assert (await sign_in(client, token(uuid4(), "agent"))).status_code == 303
    assert (await client.get("/console/privacy")).status_code == 403
    assert (await client.get("/console/privacy/verify")).status_code == 403
    assert (await officer_client.get("/console/queue")).status_code == 403
    assert (
        await officer_client.get(f"/console/customers/{uuid4()}?purpose=support")
    ).status_code == 403


async def test_an_agent_sees_the_whole_customer_and_takes_over(
    client: httpx.AsyncClient, auth: TokenFactory, runtime: Runtime, app: Litestar
) -> None:
    seen = await journey(client, auth)
    agent = uuid4()
    async with client_of(app) as console:
        assert (await sign_in(console, token(agent, "agent"))).status_code == 303

        async def queued() -> str | None:
            page = await console.get("/console/queue/rows")
            return page.text if str(seen.conversation) in page.text else None

        rows = await until(queued, "the handoff is in the queue")
        assert str(seen.application) in rows  # the half-done application is queued too
        assert SURNAME not in rows
        assert QUESTION not in rows

        # Without a purpose, nothing of the customer is shown, and nothing is audited.
        asked = await console.get(f"/console/customers/{seen.customer}")
        assert asked.status_code == 200
        assert 'name="purpose"' in asked.text
        assert KETTLE_NAME not in asked.text
        assert QUESTION not in asked.text
        bad = await console.get(f"/console/customers/{seen.customer}?purpose=curiosity")
        assert bad.status_code == 200
        assert KETTLE_NAME not in bad.text

        url = f"/console/customers/{seen.customer}?purpose=support"
        page = await console.get(url)
        assert page.status_code == 200, page.text
        for shown in (KETTLE_NAME, QUESTION, REASON, SURNAME, "Take over"):
            assert shown in page.text, shown
        assert 'sse-connect="/console/customers/' in page.text

        taken = await post_form(
            console,
            url,
            f"/console/conversations/{seen.conversation}/accept",
            {"purpose": "support"},
        )
        assert (taken.status_code, taken.headers["location"]) == (303, url)
        page = await console.get(url)
        assert "Take over" not in page.text
        assert 'name="text"' in page.text
        replied = await post_form(
            console,
            url,
            f"/console/conversations/{seen.conversation}/reply",
            {"purpose": "support", "text": "I have it now, Ada.", "medium": "web_chat"},
        )
        assert replied.status_code == 303, replied.text
        mine = await client.get(f"/v1/me/conversations/{seen.conversation}", headers=seen.laptop)
        assert mine.json()["entries"][-1]["text"] == "I have it now, Ada."
        assert mine.json()["entries"][-1]["author"] == "agent"

        empty = await post_form(
            console,
            url,
            f"/console/conversations/{seen.conversation}/reply",
            {"purpose": "support", "text": "  ", "medium": "web_chat"},
        )
        assert empty.status_code == 422
        assert "text/html" in empty.headers["content-type"]

        resolved = await post_form(
            console,
            url,
            f"/console/conversations/{seen.conversation}/resolve",
            {"purpose": "support"},
        )
        assert resolved.status_code == 303
        assert (await runtime.conversations.get(seen.conversation)).status == "resolved"

    audit = await runtime.audit.page(runtime_filter(seen.customer))
    reads = [e for e in audit.entries if e.agent_id == agent]
    assert reads
    assert {e.purpose for e in reads} == {"Helping the customer in a conversation"}
    assert {e.what for e in reads} == {"GET /console/customers/{customer_id}"}


def runtime_filter(subject: UUID) -> Any:
    from continuity.audit import AuditFilter

    return AuditFilter(subject_id=subject)


async def test_a_second_agent_cannot_take_a_taken_conversation(
    client: httpx.AsyncClient, auth: TokenFactory, app: Litestar
) -> None:
    seen = await journey(client, auth)
    url = f"/console/customers/{seen.customer}?purpose=support"
    accept = f"/console/conversations/{seen.conversation}/accept"
    async with client_of(app) as first, client_of(app) as second:
        for console in (first, second):
            assert (await sign_in(console, token(uuid4(), "agent"))).status_code == 303
        assert (await post_form(first, url, accept, {"purpose": "support"})).status_code == 303
        late = await post_form(second, url, accept, {"purpose": "support"})
        assert late.status_code == 409
        assert "text/html" in late.headers["content-type"]


async def test_an_officer_finds_a_subject_holds_erases_and_verifies_the_certificate(
    client: httpx.AsyncClient,
    auth: TokenFactory,
    officer_client: httpx.AsyncClient,
    runtime: Runtime,
) -> None:
    seen = await journey(client, auth)
    await client.put(
        "/v1/me/consents/analytics",
        json={"given": True, "policy_version": "2026-01"},
        headers=seen.laptop,
    )
    office = officer_client
    found = await post_form(
        office, "/console/privacy", "/console/privacy/find", {"query": seen.email}
    )
    subject_page = f"/console/privacy/subjects/{seen.customer}"
    assert (found.status_code, found.headers["location"]) == (303, subject_page)
    missing = await post_form(
        office, "/console/privacy", "/console/privacy/find", {"query": "nobody@example.com"}
    )
    assert missing.status_code == 404

    page = await office.get(subject_page)
    assert "analytics" in page.text
    assert "No legal hold" not in page.text
    held = await post_form(
        office, subject_page, f"{subject_page}/hold", {"reason": "litigation, case 2026-118"}
    )
    assert held.status_code == 303
    assert "litigation, case 2026-118" in (await office.get(subject_page)).text

    asked = await post_form(
        office,
        subject_page,
        f"{subject_page}/erasures",
        {"reason": "Art. 17 letter", "reference": "PRIV-9"},
    )
    assert asked.status_code == 303
    erasure_page = asked.headers["location"]
    blocked = await office.get(erasure_page)
    assert "blocked" in blocked.text
    assert "litigation" in blocked.text
    assert "Download the certificate" not in blocked.text

    lifted = await post_form(office, subject_page, f"{subject_page}/hold/lift", {})
    assert lifted.status_code == 303
    done = await office.get(erasure_page)
    assert "completed" in done.text
    assert "Signature valid" in done.text

    request_id = erasure_page.rsplit("/", 1)[1]
    download = await office.get(f"{erasure_page}/certificate")
    assert download.status_code == 200
    assert download.headers["content-disposition"] == (
        f'attachment; filename="erasure-{request_id}.json"'
    )
    signed = msgspec.json.decode(download.content, type=SignedCertificate)
    published = (await client.get("/.well-known/continuity-signing-key")).json()
    verify(signed, published["public_key_pem"])  # offline, with the published key
    assert signed.certificate["subject_id"] == str(seen.customer)

    csrf = await csrf_of(office, "/console/privacy/verify")
    checked = await office.post(
        "/console/privacy/verify",
        data={"_csrf_token": csrf},
        files={"data": ("erasure.json", download.content, "application/json")},
    )
    assert checked.status_code == 200
    assert "Signature valid" in checked.text
    tampered = download.content.replace(str(seen.customer).encode(), str(uuid4()).encode())
    checked = await office.post(
        "/console/privacy/verify",
        data={"_csrf_token": csrf},
        files={"data": ("erasure.json", tampered, "application/json")},
    )
    assert checked.status_code == 422
    assert "Not valid" in checked.text

    page = await office.get(subject_page)
    assert "erased" in page.text
    assert "Request erasure" not in page.text


async def test_no_identifier_or_personal_value_lands_in_a_console_url(
    client: httpx.AsyncClient, auth: TokenFactory, officer_client: httpx.AsyncClient, app: Litestar
) -> None:
    seen = await journey(client, auth)
    async with client_of(app) as console:
        assert (await sign_in(console, token(uuid4(), "agent"))).status_code == 303
        pages = [
            await console.get("/console/queue"),
            await console.get(f"/console/customers/{seen.customer}?purpose=support"),
        ]
    pages.append(await officer_client.get(f"/console/privacy/subjects/{seen.customer}"))
    secrets = [SURNAME, "Ada", "Merrion", KETTLE_NAME]
    for page in pages:
        for url in re.findall(r'(?:href|action|sse-connect|hx-get)="([^"]*)"', page.text):
            assert not any(s.lower() in url.lower() for s in secrets), url
    # Forms that carry personal data are POSTed, never GET (a GET form's fields land in the URL).
    for page in pages:
        for form in re.findall(r"<form[^>]*>", page.text):
            if 'method="get"' in form:
                assert "/customers/" in form  # the purpose picker: a fixed word only


def console_routes(app: Litestar) -> set[tuple[str, str]]:
    return {
        (method, route.path)
        for route in app.routes
        if isinstance(route, HTTPRoute) and route.path.startswith("/console")
        for handler in route.route_handlers
        for method in handler.http_methods
        if method not in ("OPTIONS", "HEAD")
    }


WHO: dict[tuple[str, str], str] = {
    ("GET", "/console"): "staff",
    ("GET", "/console/sign-in"): "anyone",
    ("POST", "/console/sign-in"): "anyone",
    ("POST", "/console/sign-out"): "anyone",
    ("GET", "/console/queue"): "agent",
    ("GET", "/console/queue/rows"): "agent",
    ("GET", "/console/queue/events"): "agent",
    ("GET", "/console/customers/{customer_id:uuid}"): "agent",
    ("GET", "/console/customers/{customer_id:uuid}/live"): "agent",
    ("GET", "/console/customers/{customer_id:uuid}/events"): "agent",
    ("POST", "/console/conversations/{conversation_id:uuid}/accept"): "agent",
    ("POST", "/console/conversations/{conversation_id:uuid}/reply"): "agent",
    ("POST", "/console/conversations/{conversation_id:uuid}/transfer"): "agent",
    ("POST", "/console/conversations/{conversation_id:uuid}/resolve"): "agent",
    ("GET", "/console/analytics"): "agent",
    ("GET", "/console/analytics/csv/{table:str}"): "agent",
    ("GET", "/console/privacy"): "compliance",
    ("POST", "/console/privacy/find"): "compliance",
    ("GET", "/console/privacy/subjects/{subject_id:uuid}"): "compliance",
    ("POST", "/console/privacy/subjects/{subject_id:uuid}/hold"): "compliance",
    ("POST", "/console/privacy/subjects/{subject_id:uuid}/hold/lift"): "compliance",
    ("POST", "/console/privacy/subjects/{subject_id:uuid}/erasures"): "compliance",
    ("GET", "/console/privacy/erasures/{request_id:uuid}"): "compliance",
    ("GET", "/console/privacy/erasures/{request_id:uuid}/certificate"): "compliance",
    ("GET", "/console/privacy/verify"): "compliance",
    ("POST", "/console/privacy/verify"): "compliance",
    ("GET", "/console/static/{file_path:path}"): "anyone",
}
"""Who may use each console route: the test below holds this list to the app's routes, and
calls each route with each kind of session."""


async def test_every_console_route_answers_only_its_audience(app: Litestar) -> None:
    assert console_routes(app) == WHO.keys()
    sessions: dict[str, str | None] = {
        "none": None,
        "customer": token(uuid4(), "customer", "phone"),
        "agent": token(uuid4(), "agent"),
        "compliance": token(uuid4(), "compliance"),
    }
    for (method, template), audience in WHO.items():
        if audience == "anyone":
            continue
        path = re.sub(r"\{([a-z_]+):uuid\}", lambda _: str(uuid4()), template)
        path = path.replace("{table:str}", "daily")
        for who, bearer in sessions.items():
            allowed = audience == who or (audience == "staff" and who in ("agent", "compliance"))
            if allowed and template.endswith("/events"):
                continue  # an endless stream: the browser tests open it on a real server
            async with client_of(app) as console:
                csrf = await csrf_of(console)
                if bearer is not None:
                    console.cookies.set("continuity_console", bearer, path="/console")
                answer = await console.request(
                    method,
                    path,
                    data={"_csrf_token": csrf} if method == "POST" else None,
                    headers={"Accept": "text/html"},
                )
            if who == "none":
                assert answer.status_code == 303, (method, template, who)
                assert answer.headers["location"] == "/console/sign-in"
            elif allowed:
                assert answer.status_code not in (401, 403), (method, template, who, answer.text)
            else:
                assert answer.status_code == 403, (method, template, who, answer.status_code)


async def test_console_tokens_prints_a_working_agent_and_officer_sign_in(
    client: httpx.AsyncClient, tmp_path: Any
) -> None:
    from click.testing import CliRunner

    from continuity.cli import main

    env = {"CONTINUITY_JWT_SECRET": SECRET, "CONTINUITY_DATA_DIR": str(tmp_path)}
    printed = CliRunner().invoke(main, ["console-tokens"], env=env)
    assert printed.exit_code == 0, printed.output
    assert "http://127.0.0.1:8000/console/sign-in" in printed.output
    tokens = re.findall(r"^(ey[\w-]+\.[\w-]+\.[\w-]+)$", printed.output, re.MULTILINE)
    assert len(tokens) == 2
    landed = [(await sign_in(client, t)).headers["location"] for t in tokens]
    assert landed == ["/console/queue", "/console/privacy"]


async def test_the_analytics_page_and_its_csv_files_show_the_api_s_numbers(
    client: httpx.AsyncClient, auth: TokenFactory, runtime: Runtime, app: Litestar
) -> None:
    """The journey of `tests.console_scenario`, by a customer who consented to analytics:
    a cart on the web, an application in the app, a web chat handed off. Each chart's table
    shows what the API answers, and each CSV file holds the same rows."""
    await journey(client, auth, analytics=True)
    await caught_up(runtime)
    async with client_of(app) as console:
        assert (await sign_in(console, token(uuid4(), "agent"))).status_code == 303
        page = await console.get("/console/analytics?days=7")
        assert page.status_code == 200, page.text
        assert page.text.count("<svg") >= 2
        assert "personal-loan" in page.text
        daily = await console.get("/console/analytics/csv/daily?days=7")
        assert daily.headers["content-type"].startswith("text/csv")
        assert "attachment" in daily.headers["content-disposition"]
        rows = list(csv.DictReader(io.StringIO(daily.text)))
        api = (
            await client.get(
                "/v1/analytics/daily",
                params={"from": rows[0]["day"] if rows else "2026-01-01"},
                headers=auth(uuid4(), None, "agent"),
            )
        ).json()["days"]
        assert [r["channel"] for r in rows] == [d["channel"] for d in api]
        assert [int(r["actions"]) for r in rows] == [d["actions"] for d in api]
        funnels = list(
            csv.DictReader(
                io.StringIO((await console.get("/console/analytics/csv/funnels?days=7")).text)
            )
        )
        assert {(r["form_type"], r["stage"], r["reached"]) for r in funnels} >= {
            ("personal-loan", "started", "1"),
            ("personal-loan", "identity", "1"),
        }
        assert {r["day"] for r in funnels} == {rows[0]["day"]}  # day by day, as stored
        refused = await console.get("/console/analytics/csv/customers?days=7")
        assert refused.status_code == 400


async def test_an_api_only_process_serves_no_console(started: AppFactory) -> None:
    """`CONTINUITY_CONSOLE=false`: the API alone, the console's paths not found."""
    async with started(console=False) as api_only, client_of(api_only) as client:
        assert (await client.get("/console/sign-in")).status_code == 404
        assert (await client.get("/health")).status_code == 200


async def test_streams_waiting_for_the_same_event_share_one_poll(runtime: Runtime) -> None:
    """Every agent's queue stream hears the same event at once: one wait for the projections
    serves them all, and a stream that leaves meanwhile does not end the others' wait."""
    catch_up = CatchUp()
    head = await runtime.pool.fetchval("SELECT coalesce(max(position), 0) FROM events")
    waits = [asyncio.create_task(catch_up.wait(runtime, (TIMELINE,), head + 1)) for _ in range(20)]
    await asyncio.sleep(0)
    assert len(catch_up.pending) == 1
    waits[0].cancel()
    await asyncio.gather(*waits[1:])
    assert catch_up.pending == {}
    assert waits[0].cancelled()
