"""Live updates over Server-Sent Events, against real server processes (an endless stream hangs
an in-process test client): a change written through one process reaches a stream open on
another; a reconnect with `Last-Event-ID` gets exactly what it missed; who may open which
stream; keep-alive comments; nothing left behind after many connects; SIGTERM ends the streams.

Every wait is bounded by a read timeout so that a failure fails instead of hanging; none is a
timing assertion."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest

from api.auth import Role, issue_token
from tests.continuity.test_cli import drop_schema
from tests.helpers import MUG, SECRET
from tests.server import server_env, server_process

KEEPALIVE = 0.5
READ_TIMEOUT = 10.0
"""Seconds a read waits for the next line before the test fails (keep-alives come every
KEEPALIVE seconds, so an open stream never waits this long)."""
EVENTS = "/v1/me/session/events"
PURPOSE = {"X-Purpose": "ticket 4711: live view"}
POOL_MAX = 6
ASYNC_PROJECTIONS = 4
"""Each has a runner holding its lease on a connection of its own."""
"""Small, to show streams hold no pooled connection; yet room for the lease each async
projection's runner holds (four: two queues, the timeline, analytics) and a request."""


def bearer(subject: UUID, role: Role = "customer") -> dict[str, str]:
    device = "phone" if role == "customer" else None
    token = issue_token(SECRET, subject, role, device, timedelta(hours=1))
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Message:
    id: str | None = None
    event: str | None = None
    data: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    retry: str | None = None

    @property
    def body(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads("\n".join(self.data))
        return loaded


class Stream:
    """An open SSE response, read message by message."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.iter_lines()
        self.first = Message()

    def message(self) -> Message | None:
        """The next message (comment-only ones included); None when the stream ended."""
        message = Message()
        for line in self.lines:
            if not line:
                return message
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "":
                message.comments.append(value)
            elif name == "data":
                message.data.append(value)
            elif name in ("id", "event", "retry"):
                setattr(message, name, value)
        return None

    def events(self, count: int) -> list[Message]:
        """The next `count` messages with data, passing over comments."""
        found: list[Message] = []
        while len(found) < count:
            message = self.message()
            assert message is not None, f"the stream ended after {len(found)} events"
            if message.data:
                found.append(message)
        return found


@dataclass
class Servers:
    one: str
    two: str
    schema: str
    database_url: str


@pytest.fixture(scope="module")
def servers(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """Two `continuity run` processes on one database and schema."""
    tmp = tmp_path_factory.mktemp("live")
    schema = f"test_live_{uuid4().hex[:12]}"
    env = environment(database_url, schema, tmp)
    try:
        with (
            server_process(env, tmp / "one.log") as (one, _),
            server_process(env, tmp / "two.log") as (two, _),
        ):
            yield Servers(one, two, schema, database_url)
    finally:
        drop_schema(database_url, schema)


def environment(database_url: str, schema: str, tmp: Path) -> dict[str, str]:
    return server_env(
        database_url,
        schema,
        tmp / "data",
        rate_limit="0",
        sse_keepalive=str(KEEPALIVE),
        pool_max_size=str(POOL_MAX),
        pool_min_size="1",
        log_level="WARNING",
    )


@contextmanager
def connect(base: str, headers: dict[str, str], path: str = EVENTS) -> Iterator[Stream]:
    """An open stream whose first message (sent once it is subscribed) has been read."""
    with (
        httpx.Client(base_url=base, timeout=httpx.Timeout(READ_TIMEOUT)) as client,
        client.stream("GET", path, headers=headers) as response,
    ):
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = Stream(response)
        first = stream.message()
        assert first is not None
        assert "connected" in first.comments
        stream.first = first
        yield stream


def add_item(base: str, subject: UUID, sku: str) -> None:
    answer = httpx.post(
        f"{base}/v1/me/cart/items", json={**MUG, "sku": sku}, headers=bearer(subject)
    )
    assert answer.status_code == 200, answer.text


def test_an_append_through_one_process_reaches_a_stream_on_the_other(servers: Servers) -> None:
    subject = uuid4()
    with connect(servers.two, bearer(subject)) as stream:
        assert stream.first.retry == "2000"
        add_item(servers.one, subject, "MUG-1")
        opened, added = stream.events(2)
    assert (opened.event, added.event) == ("cart.opened", "cart.item_added")
    body = added.body
    assert body["position"] == int(added.id or "")
    assert body["position"] > int(stream.first.id or "")
    assert (body["stream"], body["kind"], body["version"]) == ("cart", "cart.item_added", 2)
    assert (body["channel"], body["device"], body["actor_type"]) == ("web", "phone", "customer")
    assert body["data"] == {
        "sku": "MUG-1",
        "name": MUG["name"],
        "unit_price": "12.50",
        "quantity": 1,
    }


def test_a_reconnect_with_last_event_id_gets_exactly_what_it_missed(servers: Servers) -> None:
    subject = uuid4()
    with connect(servers.two, bearer(subject)) as stream:
        add_item(servers.one, subject, "SEEN")
        last = stream.events(2)[-1].id
    assert last is not None
    for n in range(5):
        add_item(servers.one if n % 2 else servers.two, subject, f"MISSED-{n}")
    with connect(servers.two, {**bearer(subject), "Last-Event-ID": "0"}) as everything:
        history = everything.events(7)
    missed = [m for m in history if int(m.id or 0) > int(last)]
    with connect(servers.two, {**bearer(subject), "Last-Event-ID": last}) as again:
        assert again.first.id is None  # it resumes from the client's position, not now
        got = again.events(5)
        assert [m.id for m in got] == [m.id for m in missed]
        assert [m.body["data"]["sku"] for m in got] == [f"MISSED-{n}" for n in range(5)]
        add_item(servers.one, subject, "LIVE")
        (live,) = again.events(1)
    assert int(live.id or 0) > int(got[-1].id or 0)
    assert live.body["data"]["sku"] == "LIVE"


def test_a_customer_streams_only_their_own_session(servers: Servers) -> None:
    me, other = uuid4(), uuid4()
    with connect(servers.two, bearer(me)) as stream:
        add_item(servers.one, other, "NOT-MINE")
        add_item(servers.one, me, "MINE")
        events = stream.events(2)
    assert [m.body["data"].get("sku") for m in events] == [None, "MINE"]
    assert {m.body["stream_id"] for m in events} == {events[0].body["stream_id"]}


@pytest.mark.parametrize("role", ["agent", "service", "compliance"])
def test_other_roles_cannot_open_a_customers_stream(servers: Servers, role: Role) -> None:
    answer = httpx.get(f"{servers.two}{EVENTS}", headers=bearer(uuid4(), role))
    assert answer.status_code == 403
    assert answer.headers["content-type"] == "application/problem+json"


def test_no_token_no_stream(servers: Servers) -> None:
    answer = httpx.get(f"{servers.two}{EVENTS}")
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_bad_last_event_id_is_a_problem_naming_it(servers: Servers) -> None:
    headers = {**bearer(uuid4()), "Last-Event-ID": "yesterday"}
    answer = httpx.get(f"{servers.two}{EVENTS}", headers=headers)
    assert answer.status_code == 400
    assert answer.json()["field"] == "Last-Event-ID"


def test_a_customer_cannot_use_the_agents_stream(servers: Servers) -> None:
    me = uuid4()
    path = f"/v1/agent/customers/{me}/events"
    answer = httpx.get(f"{servers.two}{path}", headers={**bearer(me), **PURPOSE})
    assert answer.status_code == 403


def test_the_agents_stream_needs_a_purpose_and_is_audited(servers: Servers) -> None:
    customer, agent = uuid4(), uuid4()
    path = f"/v1/agent/customers/{customer}/events"
    refused = httpx.get(f"{servers.two}{path}", headers=bearer(agent, "agent"))
    assert refused.status_code == 400
    assert refused.json()["field"] == "X-Purpose"
    assert audit_of(servers, customer) == []
    with connect(servers.two, {**bearer(agent, "agent"), **PURPOSE}, path) as stream:
        assert audit_of(servers, customer) == [
            (agent, f"GET {path.replace(str(customer), '{customer_id}')}")
        ]
        add_item(servers.one, customer, "SEEN-BY-AGENT")
        (_, added) = stream.events(2)
    assert added.body["data"]["sku"] == "SEEN-BY-AGENT"
    assert len(audit_of(servers, customer)) == 1  # once, on connect


def test_the_agents_queue_stream_shows_each_handoff_as_it_arrives(servers: Servers) -> None:
    customer, bot, agent = uuid4(), uuid4(), uuid4()
    path = "/v1/agent/conversations/events"
    assert httpx.get(f"{servers.two}{path}", headers=bearer(customer)).status_code == 403
    with connect(servers.two, bearer(agent, "agent"), path) as stream:
        opened = httpx.post(
            f"{servers.one}/v1/me/conversations",
            json={"medium": "web_chat", "text": "Is my parcel lost?"},
            headers=bearer(customer),
        )
        assert opened.status_code == 201, opened.text
        conversation = opened.json()["conversation_id"]
        reason = "the parcel tracker is down: needs a human"
        handed = httpx.post(
            f"{servers.one}/v1/service/conversations/{conversation}/handoff",
            json={"reason": reason},
            headers=bearer(bot, "service"),
        )
        assert handed.status_code == 200, handed.text
        accepted = httpx.post(
            f"{servers.two}/v1/agent/conversations/{conversation}/accept",
            headers=bearer(agent, "agent"),
        )
        assert accepted.status_code == 200, accepted.text
        waiting, taken = stream.events(2)
    assert (waiting.event, taken.event) == (
        "conversation.handoff_requested",
        "conversation.handoff_accepted",
    )
    assert waiting.body["conversation_id"] == conversation
    assert waiting.body["subject_id"] == str(customer)
    assert (waiting.body["status"], taken.body["status"]) == ("waiting", "with_agent")
    assert reason not in "".join(waiting.data + taken.data), "nothing personal on the queue"
    with connect(
        servers.two, {**bearer(agent, "agent"), "Last-Event-ID": waiting.id or ""}, path
    ) as again:
        (replayed,) = again.events(1)
    assert replayed.id == taken.id


def audit_of(servers: Servers, subject: UUID) -> list[tuple[UUID, str]]:
    async def read() -> list[tuple[UUID, str]]:
        conn = await asyncpg.connect(servers.database_url)
        try:
            rows = await conn.fetch(
                f'SELECT agent_id, what FROM "{servers.schema}".access_audit WHERE subject_id = $1',
                subject,
            )
        finally:
            await conn.close()
        return [(row["agent_id"], row["what"]) for row in rows]

    return asyncio.run(read())


def test_keep_alive_comments_come_while_nothing_happens(servers: Servers) -> None:
    with connect(servers.two, bearer(uuid4())) as stream:
        comments = [stream.message() for _ in range(3)]
    assert all(m is not None and m.comments == ["keep-alive"] and not m.data for m in comments)


def database_connections(pid: int, database_url: str) -> int:
    """The process's TCP connections to PostgreSQL's port, from /proc (Linux)."""
    port = urlsplit(database_url).port or 5432
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].rpartition(":")[2], 16)
            if remote_port == port and fields[9] in inodes:
                count += 1
    return count


def open_streams(base: str) -> float:
    for line in httpx.get(f"{base}/metrics").text.splitlines():
        if line.startswith("continuity_live_streams "):
            return float(line.split()[1])
    raise AssertionError("no continuity_live_streams in /metrics")


CYCLES = 300


def test_no_leak_after_many_connects_and_disconnects(database_url: str, tmp_path: Path) -> None:
    if urlsplit(database_url).hostname in (None, ""):
        pytest.skip("counts TCP connections to the test PostgreSQL")
    schema = f"test_live_{uuid4().hex[:12]}"
    env = environment(database_url, schema, tmp_path)
    subject = uuid4()
    try:
        with server_process(env, tmp_path / "server.log") as (base, process):
            for n in range(20):
                add_item(base, subject, f"SKU-{n}")
            before = database_connections(process.pid, database_url)

            def cycle(n: int) -> None:
                headers = bearer(subject)
                if n % 3 == 0:
                    headers["Last-Event-ID"] = "0"  # leave in the middle of a catch-up
                with connect(base, headers) as stream:
                    if n % 3 == 1:
                        stream.message()

            with ThreadPoolExecutor(8) as threads:
                list(threads.map(cycle, range(CYCLES)))
            for _ in range(100):  # the server sees the last disconnects a moment later
                if open_streams(base) == 0:
                    break
                time.sleep(0.1)
            assert open_streams(base) == 0
            after = database_connections(process.pid, database_url)
            # the pool; the live feed's LISTEN connection, the process's broadcasts one, and
            # the leases of the async projections' runners (continuity.runtime)
            assert after <= POOL_MAX + 2 + ASYNC_PROJECTIONS, (before, after)
            with connect(base, bearer(subject)) as stream:  # and it still works
                add_item(base, subject, "AFTER")
                (added,) = stream.events(1)
            assert added.body["data"]["sku"] == "AFTER"
    finally:
        drop_schema(database_url, schema)


def ended(stream: Stream) -> bool:
    """Whether the stream ends within READ_TIMEOUT's worth of keep-alives, its last message a
    hint to reconnect (`retry:`)."""
    last = None
    for _ in range(int(READ_TIMEOUT / KEEPALIVE)):
        message = stream.message()
        if message is None:
            assert last is not None
            assert (last.comments, last.retry) == (["ended: reconnect"], "2000")
            return True
        if last is not None:
            assert last.comments == ["keep-alive"]
        last = message
    return False


def test_sigterm_ends_open_streams_and_the_server(database_url: str, tmp_path: Path) -> None:
    schema = f"test_live_{uuid4().hex[:12]}"
    env = environment(database_url, schema, tmp_path)
    try:
        with server_process(env, tmp_path / "server.log") as (base, process), ExitStack() as open:
            streams = [open.enter_context(connect(base, bearer(uuid4()))) for _ in range(3)]
            process.send_signal(signal.SIGTERM)
            for stream in streams:
                assert ended(stream), "the stream went on after SIGTERM"
            assert process.wait(READ_TIMEOUT) in (0, -signal.SIGTERM)  # uvicorn re-raises it
    finally:
        drop_schema(database_url, schema)
