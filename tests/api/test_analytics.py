"""Non-personal analytics: only subjects who consented to analytics when they acted are counted;
the counts hold no subject and survive the erasure of a subject they counted."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from continuity.erasure import shred_subject
from continuity.runtime import Runtime
from tests.api.test_agent_views import agent_headers
from tests.api.test_applications import APPS, EMPLOYMENT, IDENTITY, LOAN, REVIEW
from tests.helpers import MUG, TokenFactory

pytestmark = pytest.mark.anyio

VIEWED = {"items": [{"type": "viewed", "sku": "MUG-1", "name": "Mug"}]}


async def caught_up(runtime: Runtime) -> None:
    """Wait until the analytics runner (the app runs it) has applied the whole log."""
    head = await runtime.pool.fetchval("SELECT coalesce(max(position), 0) FROM events")
    for _ in range(1_000):
        at = await runtime.pool.fetchval("SELECT position FROM tracking WHERE name = 'analytics'")
        if at is not None and at >= head:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"analytics stayed at {at}, short of {head}")


async def daily(client: httpx.AsyncClient, headers: dict[str, str], **query: str) -> Any:
    today = datetime.now(UTC).date().isoformat()
    answer = await client.get(
        "/v1/analytics/daily", params={"from": today, "to": today, **query}, headers=headers
    )
    assert answer.status_code == 200, answer.text
    return {d["channel"]: (d["actions"], d["active_subjects"]) for d in answer.json()["days"]}


async def test_only_consenting_subjects_count_and_the_counts_survive_erasure(
    client: httpx.AsyncClient, auth: TokenFactory, runtime: Runtime
) -> None:
    agent = auth(uuid4(), None, "agent")
    keen, shy = uuid4(), uuid4()
    keen_app, keen_web = {**auth(keen, "phone"), "X-Channel": "app"}, auth(keen, "laptop")
    shy_app = {**auth(shy, "phone"), "X-Channel": "app"}

    # Before consenting, keen's action is not counted: consent counts at the time of action.
    assert (await client.post("/v1/me/activity", json=VIEWED, headers=keen_app)).status_code == 200
    given = {"given": True, "policy_version": "2026-01"}
    assert (
        await client.put("/v1/me/consents/analytics", json=given, headers=keen_app)
    ).status_code == 200
    for _ in range(3):
        await client.post("/v1/me/activity", json=VIEWED, headers=keen_app)
    await client.post("/v1/me/activity", json=VIEWED, headers=keen_web)
    for _ in range(2):
        await client.post("/v1/me/activity", json=VIEWED, headers=shy_app)
    await caught_up(runtime)
    counted = await daily(client, agent)
    assert counted == {"app": (3, 1), "web": (1, 1)}
    assert await daily(client, agent, channel="web") == {"web": (1, 1)}

    withdrawn = {"given": False, "policy_version": "2026-01"}
    await client.put("/v1/me/consents/analytics", json=withdrawn, headers=keen_app)
    await client.post("/v1/me/activity", json=VIEWED, headers=keen_app)
    await caught_up(runtime)
    assert await daily(client, agent) == counted, "nothing counts after a withdrawal"

    before = await runtime.pool.fetchval(
        "SELECT count(*) FROM analytics_active WHERE subject_id = $1", keen
    )
    assert before == 2
    await shred_subject(runtime.store, runtime.vault, keen)
    assert await daily(client, agent) == counted, "the counts outlive the erasure"
    for table in ("analytics_active", "analytics_consent"):
        left = await runtime.pool.fetchval(
            f"SELECT count(*) FROM {table} WHERE subject_id = $1",
            keen,
        )
        assert left == 0, table
    columns = await runtime.pool.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'analytics_daily'"
        " AND table_schema = current_schema()"
    )
    assert {c["column_name"] for c in columns} == {
        "day",
        "channel",
        "actions",
        "active_subjects",
        "carts_started",
        "carts_checked_out",
        "applications_started",
        "applications_submitted",
        "conversations_opened",
        "handoffs_requested",
        "conversations_resolved",
        "ratings",
        "rating_sum",
    }


async def test_carts_and_applications_count_on_the_channel_where_each_happened(
    client: httpx.AsyncClient, auth: TokenFactory, runtime: Runtime
) -> None:
    """A small journey, counted by hand. Keen (consenting) starts a cart on the web and checks
    it out in the app, and starts and submits an application in the app; shy (not consenting)
    does the same and counts nowhere. Each event a customer records is an action: a cart's
    first item is two (the cart opened, the item added), an application is started, its four
    steps completed (a retiree skips the employer) and submitted."""
    agent = auth(uuid4(), None, "agent")
    keen, shy = uuid4(), uuid4()
    given = {"given": True, "policy_version": "2026-01"}
    consented = await client.put(
        "/v1/me/consents/analytics", json=given, headers=auth(keen, "phone")
    )
    assert consented.status_code == 200
    for subject in (keen, shy):
        web, app = auth(subject, "laptop"), {**auth(subject, "phone"), "X-Channel": "app"}
        assert (await client.post("/v1/me/cart/items", json=MUG, headers=web)).status_code == 200
        assert (await client.post("/v1/me/cart/checkout", headers=app)).status_code == 200
        started = await client.post(APPS, json={"form_type": "personal-loan"}, headers=app)
        application = f"{APPS}/{started.json()['application_id']}"
        retired = {**EMPLOYMENT, "status": "retired"}
        for step, values in (("identity", IDENTITY), ("employment", retired), ("loan", LOAN)):
            done = await client.post(
                f"{application}/steps/{step}/complete", json={"values": values}, headers=app
            )
            assert done.status_code == 200, done.text
        await client.post(
            f"{application}/steps/review/complete", json={"values": REVIEW}, headers=app
        )
        assert (await client.post(f"{application}/submit", headers=app)).status_code == 200
    await caught_up(runtime)
    assert await counted_today(client, agent) == {
        "web": {"actions": 2, "active_subjects": 1, "carts_started": 1},
        "app": {
            "actions": 1 + 1 + 4 + 1,
            "active_subjects": 1,
            "carts_checked_out": 1,
            "applications_started": 1,
            "applications_submitted": 1,
        },
    }


async def test_conversations_count_who_ever_moved_them(
    client: httpx.AsyncClient, auth: TokenFactory, runtime: Runtime
) -> None:
    """Keen (consenting) and shy (not) each open a chat on the web, ask for a human, have an
    agent take it over and resolve it, and rate it 4. The customer's four events are actions
    on the web (opened, the first turn, the handoff, the rating); the agent's resolution
    counts on the agent's channel, as a milestone, not as a customer action."""
    keen, shy = uuid4(), uuid4()
    given = {"given": True, "policy_version": "2026-01"}
    consented = await client.put("/v1/me/consents/analytics", json=given, headers=auth(keen))
    assert consented.status_code == 200
    for subject in (keen, shy):
        me, agent = auth(subject, "laptop"), agent_headers(auth, uuid4())
        chat = {"medium": "web_chat", "text": "Where is my parcel?"}
        conversation = (await client.post("/v1/me/conversations", json=chat, headers=me)).json()
        url = f"/v1/me/conversations/{conversation['conversation_id']}"
        handoff = {"reason": "a human, please"}
        assert (await client.post(f"{url}/handoff", json=handoff, headers=me)).status_code == 200
        taken = url.replace("/v1/me/", "/v1/agent/")
        assert (await client.post(f"{taken}/accept", headers=agent)).status_code == 200
        assert (await client.post(f"{taken}/resolve", headers=agent)).status_code == 200
        rated = await client.post(f"{url}/rating", json={"rating": 4}, headers=me)
        assert rated.status_code == 200, rated.text
    await caught_up(runtime)
    assert await counted_today(client, auth(uuid4(), None, "agent")) == {
        "web": {
            "actions": 4,
            "active_subjects": 1,
            "conversations_opened": 1,
            "handoffs_requested": 1,
            "ratings": 1,
            "rating_sum": 4,
        },
        "agent": {"conversations_resolved": 1},
    }


async def counted_today(client: httpx.AsyncClient, agent: dict[str, str]) -> dict[str, Any]:
    """Today's counts by channel, each with its counts that are not zero."""
    today = datetime.now(UTC).date().isoformat()
    answer = await client.get(
        "/v1/analytics/daily", params={"from": today, "to": today}, headers=agent
    )
    assert answer.status_code == 200, answer.text
    return {
        day["channel"]: {k: v for k, v in day.items() if k not in ("day", "channel") and v}
        for day in answer.json()["days"]
    }


async def test_analytics_are_for_agents_and_check_their_range(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    for role in ("customer", "compliance", "service"):
        token = auth(uuid4(), "phone", role)
        assert (await client.get("/v1/analytics/daily", headers=token)).status_code == 403, role
    agent = auth(uuid4(), None, "agent")
    reversed_ = await client.get(
        "/v1/analytics/daily", params={"from": "2026-02-01", "to": "2026-01-01"}, headers=agent
    )
    assert reversed_.status_code == 400, reversed_.text
    assert reversed_.json()["errors"][0]["field"] == "from"
    bad = await client.get("/v1/analytics/daily", params={"channel": "pigeon"}, headers=agent)
    assert bad.status_code == 400, bad.text


async def test_journeys_funnels_and_conversation_endings_match_a_hand_count(
    client: httpx.AsyncClient, auth: TokenFactory, runtime: Runtime
) -> None:
    """Counted by hand. Keen (consenting):
    - a cart started on the web, continued in the app, checked out there: web → app;
    - a loan application started in the app (identity there, then back to identity and again),
      continued on the web (employment, retired: the employer step is skipped, then the loan),
      never submitted: app → web; identity, employment and loan reached once each;
    - a web chat handed to a person, answered and resolved by an agent, the customer writing
      once more from the app before that: web → app; resolved on web, not contained, one
      first reply, rated 5 from the app;
    - an app chat the customer resolves themselves: resolved on app, contained.
    Shy (not consenting) does the cart and the chat the same way and counts nowhere."""
    keen, shy = uuid4(), uuid4()
    given = {"given": True, "policy_version": "2026-01"}
    assert (
        await client.put("/v1/me/consents/analytics", json=given, headers=auth(keen))
    ).status_code == 200
    chats: dict[UUID, str] = {}
    for subject in (keen, shy):
        web, app = auth(subject, "laptop"), {**auth(subject, "phone"), "X-Channel": "app"}
        tea = {**MUG, "sku": "TEA-1", "name": "Tea"}
        assert (await client.post("/v1/me/cart/items", json=MUG, headers=web)).status_code == 200
        assert (await client.post("/v1/me/cart/items", json=tea, headers=app)).status_code == 200
        assert (await client.post("/v1/me/cart/checkout", headers=app)).status_code == 200
        chat = {"medium": "web_chat", "text": "Where is my parcel?"}
        opened = await client.post("/v1/me/conversations", json=chat, headers=web)
        url = f"/v1/me/conversations/{opened.json()['conversation_id']}"
        chats[subject] = opened.json()["conversation_id"]
        handoff = {"reason": "a human, please"}
        assert (await client.post(f"{url}/handoff", json=handoff, headers=web)).status_code == 200
        agent = agent_headers(auth, uuid4())
        taken = url.replace("/v1/me/", "/v1/agent/")
        assert (await client.post(f"{taken}/accept", headers=agent)).status_code == 200
        answer = {"medium": "web_chat", "text": "Found it: it arrives tomorrow."}
        assert (await client.post(f"{taken}/turns", json=answer, headers=agent)).status_code == 200
        more = {"medium": "app_chat", "text": "Thanks!"}
        assert (await client.post(f"{url}/turns", json=more, headers=app)).status_code == 200
        assert (await client.post(f"{taken}/resolve", headers=agent)).status_code == 200
        rated = await client.post(f"{url}/rating", json={"rating": 5}, headers=app)
        assert rated.status_code == 200, rated.text

    web, app = auth(keen, "laptop"), {**auth(keen, "phone"), "X-Channel": "app"}
    started = await client.post(APPS, json={"form_type": "personal-loan"}, headers=app)
    application = f"{APPS}/{started.json()['application_id']}"

    async def complete(step: str, values: dict[str, Any], headers: dict[str, str]) -> None:
        done = await client.post(
            f"{application}/steps/{step}/complete", json={"values": values}, headers=headers
        )
        assert done.status_code == 200, done.text

    await complete("identity", IDENTITY, app)
    back = await client.post(f"{application}/back", json={"step": "identity"}, headers=app)
    assert back.status_code == 200, back.text
    await complete("identity", IDENTITY, app)
    await complete("employment", {**EMPLOYMENT, "status": "retired"}, web)
    await complete("loan", LOAN, web)
    own = await client.post(
        "/v1/me/conversations", json={"medium": "app_chat", "text": "Opening hours?"}, headers=app
    )
    own_url = f"/v1/me/conversations/{own.json()['conversation_id']}"
    assert (await client.post(f"{own_url}/resolve", headers=app)).status_code == 200
    await caught_up(runtime)

    agent = auth(uuid4(), None, "agent")
    today = datetime.now(UTC).date().isoformat()
    period = {"from": today, "to": today}
    journeys = await client.get("/v1/analytics/journeys", params=period, headers=agent)
    assert journeys.status_code == 200, journeys.text
    assert journeys.json()["pairs"] == [
        {"from_channel": "web", "to_channel": "app", "journeys": 2},
        {"from_channel": "app", "to_channel": "web", "journeys": 1},
    ]
    funnels = await client.get("/v1/analytics/funnels", params=period, headers=agent)
    assert funnels.json()["forms"] == [
        {
            "form_type": "personal-loan",
            "stages": [
                {"stage": "started", "reached": 1},
                {"stage": "identity", "reached": 1},
                {"stage": "employment", "reached": 1},
                {"stage": "loan", "reached": 1},
            ],
        }
    ]

    times = await _times(runtime, UUID(chats[keen]))
    own_times = await _times(runtime, UUID(own.json()["conversation_id"]))
    endings = await client.get("/v1/analytics/conversations", params=period, headers=agent)
    assert endings.json()["channels"] == [
        {
            "channel": "app",
            "opened": 1,
            "handed_off": 0,
            "resolved": 1,
            "contained": 1,
            "resolution_seconds": pytest.approx(
                own_times["Resolved"] - own_times["Opened"], abs=1e-5
            ),
            "first_replies": 0,
            "first_reply_seconds": None,
            "ratings": 0,
            "rating_sum": 0,
        },
        {
            "channel": "web",
            "opened": 1,
            "handed_off": 1,
            "resolved": 1,
            "contained": 0,
            "resolution_seconds": pytest.approx(times["Resolved"] - times["Opened"], abs=1e-5),
            "first_replies": 1,
            "first_reply_seconds": pytest.approx(
                times["TurnAdded"] - times["HandoffRequested"], abs=1e-5
            ),
            "ratings": 1,
            "rating_sum": 5,
        },
    ]

    kept = await runtime.pool.fetchval(
        "SELECT count(*) FROM analytics_journeys WHERE subject_id = $1", keen
    )
    assert kept == 4  # the cart, the application, the two chats
    await shred_subject(runtime.store, runtime.vault, keen)
    gone = await runtime.pool.fetchval(
        "SELECT count(*) FROM analytics_journeys WHERE subject_id = $1", keen
    )
    assert gone == 0  # what the fold remembered of keen's journeys went with keen
    for route, key in (("journeys", "pairs"), ("funnels", "forms")):
        again = await client.get(f"/v1/analytics/{route}", params=period, headers=agent)
        assert again.json()[key] == {"journeys": journeys, "funnels": funnels}[route].json()[key]


async def _times(runtime: Runtime, conversation: UUID) -> dict[str, float]:
    """When each kind of event of the conversation was recorded (the first agent turn for a
    turn: the only one after the handoff that an agent wrote), as seconds since the epoch."""
    rows = await runtime.pool.fetch(
        "SELECT topic, recorded_at FROM events WHERE stream_id = $1 ORDER BY version",
        conversation,
    )
    found: dict[str, float] = {}
    handed = False
    for row in rows:
        kind = row["topic"].rpartition(".")[2]
        handed = handed or kind == "HandoffRequested"
        if kind == "TurnAdded" and (not handed or "TurnAdded" in found):
            continue
        found.setdefault(kind, row["recorded_at"].timestamp())
    return found
