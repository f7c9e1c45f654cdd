"""The customer-service scenario over HTTP: a customer asks a bot, the bot hands off with a
reason, two agents race to take it (one wins, one gets a clear 409), the winner reads the whole
transcript (audited), replies, transfers; the customer resolves and rates; an inbound email
threads into the customer's open conversation by its sender, and an unknown sender becomes a
new guest with a conversation of their own."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import pytest
from litestar import Litestar

from continuity.erasure import shred_subject
from continuity.runtime import Runtime
from tests.api.test_agent_views import PURPOSE, agent_headers
from tests.helpers import TokenFactory
from tests.privacy.test_at_rest import table_bytes

pytestmark = pytest.mark.anyio

QUESTION = "Where is my order Quokka-881? It was due Tuesday."
REASON = "order lookup needs a human: parcel marked lost"


async def opened(client: httpx.AsyncClient, me: dict[str, str], text: str = QUESTION) -> str:
    answer = await client.post(
        "/v1/me/conversations", json={"medium": "web_chat", "text": text}, headers=me
    )
    assert answer.status_code == 201, answer.text
    assert answer.headers["Location"].endswith(answer.json()["conversation_id"])
    conversation: str = answer.json()["conversation_id"]
    return conversation


async def until_queued(
    client: httpx.AsyncClient, headers: dict[str, str], conversation: str, **params: str
) -> dict[str, Any]:
    for _ in range(200):
        answer = await client.get("/v1/agent/conversations", params=params, headers=headers)
        assert answer.status_code == 200, answer.text
        for item in answer.json()["items"]:
            if item["conversation_id"] == conversation:
                found: dict[str, Any] = item
                return found
        await asyncio.sleep(0.05)
    raise AssertionError("the queue never showed the conversation")


async def test_a_bot_hands_off_and_the_agent_who_takes_over_gets_the_whole_transcript(
    client: httpx.AsyncClient, auth: TokenFactory, app: Litestar
) -> None:
    customer = uuid4()
    me = auth(customer, "laptop")
    bot = auth(uuid4(), None, "service")
    conversation = await opened(client, me)

    read = await client.get(f"/v1/service/conversations/{conversation}", headers=bot)
    assert read.status_code == 200, read.text
    assert read.json()["entries"][-1]["text"] == QUESTION
    said = await client.post(
        f"/v1/service/conversations/{conversation}/turns",
        json={"medium": "web_chat", "text": "Let me check that parcel for you."},
        headers=bot,
    )
    assert said.status_code == 200, said.text
    more = await client.post(
        f"/v1/me/conversations/{conversation}/turns",
        json={
            "medium": "web_chat",
            "text": "Here is the photo of the label.",
            "attachments": [
                {"reference": "s3://uploads/label-77.png", "content_type": "image/png"}
            ],
        },
        headers=me,
    )
    assert more.status_code == 200, more.text
    handed = await client.post(
        f"/v1/service/conversations/{conversation}/handoff", json={"reason": REASON}, headers=bot
    )
    assert handed.status_code == 200, handed.text
    assert handed.json()["status"] == "waiting"

    first, second = uuid4(), uuid4()
    queued = await until_queued(client, agent_headers(auth, first), conversation)
    assert (queued["status"], queued["medium"], queued["turns"]) == ("waiting", "web_chat", 3)

    race = await asyncio.gather(
        *(
            client.post(
                f"/v1/agent/conversations/{conversation}/accept",
                headers=agent_headers(auth, agent),
            )
            for agent in (first, second)
        )
    )
    statuses = sorted(r.status_code for r in race)
    assert statuses == [200, 409], [r.text for r in race]
    winner = first if race[0].status_code == 200 else second
    loser = race[1] if winner == first else race[0]
    assert loser.headers["content-type"] == "application/problem+json"
    assert "another agent has taken this conversation" in loser.json()["detail"]

    transcript = await client.get(
        f"/v1/agent/conversations/{conversation}", headers=agent_headers(auth, winner)
    )
    assert transcript.status_code == 200, transcript.text
    entries = transcript.json()["entries"]
    assert [(e["kind"], e.get("author"), e.get("text")) for e in entries] == [
        ("opened", None, None),
        ("turn", "customer", QUESTION),
        ("turn", "bot", "Let me check that parcel for you."),
        ("turn", "customer", "Here is the photo of the label."),
        ("handoff_requested", None, None),
        ("handoff_accepted", None, None),
    ]
    assert entries[3]["attachments"][0]["reference"] == "s3://uploads/label-77.png"
    assert entries[4]["reason"] == REASON
    assert entries[5]["agent_id"] == str(winner)
    assert entries[1]["device"] == "laptop"
    runtime: Runtime = app.state.runtime
    audited = await runtime.audit.of_subject(customer)
    assert [(e.agent_id, e.purpose) for e in audited][-1] == (winner, PURPOSE)
    assert audited[-1].what == "GET /v1/agent/conversations/{conversation_id}"

    late_bot = await client.post(
        f"/v1/service/conversations/{conversation}/turns",
        json={"medium": "web_chat", "text": "Anything else?"},
        headers=bot,
    )
    assert late_bot.status_code == 409
    not_theirs = await client.post(
        f"/v1/agent/conversations/{conversation}/turns",
        json={"medium": "web_chat", "text": "Hi, I am not on this one."},
        headers=agent_headers(auth, first if winner == second else second),
    )
    assert not_theirs.status_code == 409
    replied = await client.post(
        f"/v1/agent/conversations/{conversation}/turns",
        json={"medium": "web_chat", "text": "I have reissued the parcel."},
        headers=agent_headers(auth, winner),
    )
    assert replied.status_code == 200, replied.text

    session = (await client.get("/v1/me/session", headers=auth(customer, "phone"))).json()
    (view,) = session["conversations"]
    assert view["status"] == "with_agent"
    assert view["last_turns"][-1]["text"] == "I have reissued the parcel."
    listed = (await client.get("/v1/me/conversations", headers=me)).json()
    assert listed[0]["agent_id"] == str(winner)

    colleague = uuid4()
    moved = await client.post(
        f"/v1/agent/conversations/{conversation}/transfer",
        json={"to_agent": str(colleague)},
        headers=agent_headers(auth, winner),
    )
    assert moved.json()["agent_id"] == str(colleague)
    resolved = await client.post(
        f"/v1/agent/conversations/{conversation}/resolve", headers=agent_headers(auth, colleague)
    )
    assert resolved.json()["status"] == "resolved"
    rated = await client.post(
        f"/v1/me/conversations/{conversation}/rating", json={"rating": 5}, headers=me
    )
    assert rated.json()["rating"] == 5, rated.text
    bad = await client.post(
        f"/v1/me/conversations/{conversation}/rating", json={"rating": 6}, headers=me
    )
    assert bad.status_code == 400
    assert "rating" in bad.text
    reopened = await client.post(f"/v1/me/conversations/{conversation}/reopen", headers=me)
    assert reopened.json()["status"] == "open"


async def test_a_retried_turn_is_recorded_once_and_another_customer_sees_nothing(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    me = auth(uuid4())
    conversation = await opened(client, me)
    key = {"Idempotency-Key": str(uuid4())}
    body = {"medium": "app_chat", "text": "Hello again"}
    for _ in range(2):
        answer = await client.post(
            f"/v1/me/conversations/{conversation}/turns", json=body, headers={**me, **key}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["turns"] == 2
    other = auth(uuid4())
    hidden = await client.get(f"/v1/me/conversations/{conversation}", headers=other)
    assert hidden.status_code == 404
    sneaky = await client.post(
        f"/v1/me/conversations/{conversation}/turns", json=body, headers=other
    )
    assert sneaky.status_code == 404
    mine = (await client.get(f"/v1/me/conversations/{conversation}", headers=me)).json()
    assert [e.get("text") for e in mine["entries"]] == [None, QUESTION, "Hello again"]


async def test_a_transcript_pages_back_from_the_newest(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    me = auth(uuid4())
    conversation = await opened(client, me)
    for n in range(5):
        body = {"medium": "web_chat", "text": f"line {n}"}
        await client.post(f"/v1/me/conversations/{conversation}/turns", json=body, headers=me)
    url = f"/v1/me/conversations/{conversation}"
    newest = (await client.get(url, params={"limit": 3}, headers=me)).json()
    assert [e["text"] for e in newest["entries"]] == ["line 2", "line 3", "line 4"]
    older = await client.get(url, params={"limit": 3, "before": newest["next_before"]}, headers=me)
    assert [e["text"] for e in older.json()["entries"]] == [QUESTION, "line 0", "line 1"]
    rest = await client.get(url, params={"before": older.json()["next_before"]}, headers=me)
    assert [e["kind"] for e in rest.json()["entries"]] == ["opened"]
    assert rest.json()["next_before"] is None


async def test_an_inbound_email_threads_into_the_senders_open_conversation(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    customer = uuid4()
    me = auth(customer)
    conversation = await opened(client, me)
    registered = await client.post(
        "/v1/me/identifiers", json={"kind": "email", "value": "Ada.Quokka@example.org"}, headers=me
    )
    assert registered.json() == {"kind": "email", "registered": True}
    again = await client.post(
        "/v1/me/identifiers", json={"kind": "email", "value": "ada.quokka@example.org"}, headers=me
    )
    assert again.json()["registered"] is False
    gateway = auth(uuid4(), None, "service")
    email = {
        "channel": "email",
        "sender": " ADA.QUOKKA@example.org",
        "subject": "Re: my parcel",
        "text": "Still nothing arrived.",
    }
    key = {"Idempotency-Key": str(uuid4())}
    threaded = await client.post("/v1/service/inbound", json=email, headers={**gateway, **key})
    assert threaded.status_code == 200, threaded.text
    body = threaded.json()
    assert (body["subject_id"], body["conversation_id"]) == (str(customer), conversation)
    assert (body["new_customer"], body["new_conversation"]) == (False, False)
    redelivered = await client.post("/v1/service/inbound", json=email, headers={**gateway, **key})
    assert redelivered.json()["conversation"]["turns"] == 2
    transcript = (await client.get(f"/v1/me/conversations/{conversation}", headers=me)).json()
    last = transcript["entries"][-1]
    assert (last["medium"], last["channel"], last["subject"], last["text"]) == (
        "email",
        "email",
        "Re: my parcel",
        "Still nothing arrived.",
    )
    assert transcript["conversation"]["turns"] == 2

    taken = await client.post(
        "/v1/me/identifiers",
        json={"kind": "email", "value": "ada.quokka@example.org"},
        headers=auth(uuid4()),
    )
    assert taken.status_code == 409
    assert "registered to another customer" in taken.json()["detail"]


async def test_an_unknown_sender_becomes_a_guest_with_a_conversation_of_their_own(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    gateway = auth(uuid4(), None, "service")
    sms = {"channel": "sms", "sender": "+44 7700 900123", "text": "Is the store open Sunday?"}
    first = (await client.post("/v1/service/inbound", json=sms, headers=gateway)).json()
    assert (first["new_customer"], first["new_conversation"]) == (True, True)
    follow_up = {**sms, "sender": "0044-7700-900123", "text": "And on holidays?"}
    second = (await client.post("/v1/service/inbound", json=follow_up, headers=gateway)).json()
    assert (second["new_customer"], second["new_conversation"]) == (False, False)
    assert (second["subject_id"], second["conversation_id"]) == (
        first["subject_id"],
        first["conversation_id"],
    )
    assert second["conversation"]["turns"] == 2
    bad = await client.post(
        "/v1/service/inbound", json={**sms, "sender": "call me maybe"}, headers=gateway
    )
    assert bad.status_code == 422
    assert "international form" in bad.json()["detail"]


async def test_no_identifier_or_turn_is_stored_in_clear(
    client: httpx.AsyncClient, auth: TokenFactory, database_url: str, schema: str
) -> None:
    me = auth(uuid4())
    await client.post(
        "/v1/me/identifiers", json={"kind": "email", "value": "zebulon.x@example.org"}, headers=me
    )
    await client.post(
        "/v1/me/identifiers", json={"kind": "phone", "value": "+15550199887"}, headers=me
    )
    gateway = auth(uuid4(), None, "service")
    email = {"channel": "email", "sender": "zebulon.x@example.org", "text": "Quixotic-walrus"}
    assert (
        await client.post("/v1/service/inbound", json=email, headers=gateway)
    ).status_code == 200
    conn = await asyncpg.connect(database_url)
    try:
        dumped = await table_bytes(conn, schema)
    finally:
        await conn.close()
    assert dumped
    for secret in (b"zebulon", b"5550199887", b"Quixotic-walrus", b"example.org"):
        assert [name for name, data in dumped if secret in data.lower()] == []


async def test_the_agents_queue_filters_by_medium_and_waiting_time(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    me = auth(uuid4())
    conversation = await opened(client, me)
    handed = await client.post(
        f"/v1/me/conversations/{conversation}/handoff", json={"reason": REASON}, headers=me
    )
    assert handed.status_code == 200, handed.text
    agent = agent_headers(auth, uuid4())
    await until_queued(client, agent, conversation, medium="web_chat")
    by_sms = await client.get("/v1/agent/conversations", params={"medium": "sms"}, headers=agent)
    assert conversation not in [i["conversation_id"] for i in by_sms.json()["items"]]
    long_waiting = await client.get(
        "/v1/agent/conversations", params={"waited_minutes": 60}, headers=agent
    )
    assert conversation not in [i["conversation_id"] for i in long_waiting.json()["items"]]
    bad = await client.get("/v1/agent/conversations", params={"cursor": "nope"}, headers=agent)
    assert bad.status_code == 400
    assert (await client.get("/v1/agent/conversations", headers=me)).status_code == 403
    no_purpose = await client.get(
        f"/v1/agent/conversations/{conversation}", headers=agent_headers(auth, uuid4(), None)
    )
    assert no_purpose.status_code == 400
    assert "X-Purpose" in no_purpose.text


async def test_an_erased_customers_address_is_refused_not_threaded(
    client: httpx.AsyncClient, auth: TokenFactory, app: Litestar
) -> None:
    customer = uuid4()
    me = auth(customer)
    await opened(client, me)
    email = {"kind": "email", "value": "gone.soon@example.org"}
    assert (await client.post("/v1/me/identifiers", json=email, headers=me)).status_code == 200
    runtime: Runtime = app.state.runtime
    await shred_subject(runtime.store, runtime.vault, customer)
    gateway = auth(uuid4(), None, "service")
    inbound = {"channel": "email", "sender": "gone.soon@example.org", "text": "Hello?"}
    answer = await client.post("/v1/service/inbound", json=inbound, headers=gateway)
    assert answer.status_code == 409, answer.text  # suppressed: tests/api/test_suppression.py
    assert answer.json()["type"].endswith("/identifier-suppressed")
