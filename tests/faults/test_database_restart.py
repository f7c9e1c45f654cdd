"""PostgreSQL stopped and started under load, on a throwaway server of the test's own: requests
during the outage fail fast with a 503 problem and `Retry-After`, `/ready` says the database is
unreachable, the pool and every listener reconnect by themselves, and afterwards nothing the
clients saw acknowledged is lost or doubled; a live stream and an async projection's runner
connected through a crash-restart catch up without gaps or duplicates."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from uuid import UUID, uuid4

import httpx
import pytest

from continuity.processes import LIVE
from privacy.master_key import MasterKey
from tests.faults.cluster import (
    FAIL_FAST,
    Server,
    Tally,
    add_items,
    bearer,
    connected,
    count,
    under_load,
)
from tests.faults.report import report, report_load
from tests.faults.throwaway import Throwaway
from tests.helpers import MUG, SECRET

pytestmark = pytest.mark.anyio

SCHEMA = "continuity"
OUTAGE = 1.5
"""Seconds the database stays down."""


class Cluster:
    def __init__(self, database: Throwaway, servers: list[Server]) -> None:
        self.database = database
        self.servers = servers

    async def outage(self, mode: str, meanwhile: Callable[[], None] = lambda: None) -> list[float]:
        """Stop the database (`fast`: an operator's restart; `immediate`: a crash), ask each
        server's `/ready` and call `meanwhile`, start it again; the seconds each `/ready`
        took."""
        await asyncio.to_thread(self.database.stop, mode)
        meanwhile()
        took: list[float] = []
        async with httpx.AsyncClient(timeout=FAIL_FAST * 2) as client:
            for server in self.servers:
                started = time.monotonic()
                ready = await client.get(f"{server.base}/ready")
                took.append(time.monotonic() - started)
                assert (ready.status_code, ready.json()["status"]) == (503, "unavailable")
        await asyncio.sleep(OUTAGE)
        await asyncio.to_thread(self.database.start)
        return took


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("restart")
    database = Throwaway(root).init()
    database.start()
    env = {
        "CONTINUITY_DATABASE_URL": database.url,
        "CONTINUITY_DATABASE_SCHEMA": SCHEMA,
        "CONTINUITY_MASTER_KEY": MasterKey.generate().to_text(),
        "CONTINUITY_JWT_SECRET": SECRET,
        "CONTINUITY_DATA_DIR": str(root / "data"),
        "CONTINUITY_LOG_LEVEL": "INFO",  # the listeners say when they are back
        "CONTINUITY_POOL_TIMEOUT": "1",
        "CONTINUITY_STATEMENT_TIMEOUT": "5",
    }
    servers = [Server(env, root, "a"), Server(env, root, "b")]
    try:
        for server in servers:
            server.start()
        yield Cluster(database, servers)
    finally:
        for server in servers:
            server.stop()
        with contextlib.suppress(Exception):
            database.stop("immediate")


async def test_a_restart_under_load_fails_fast_and_loses_nothing(cluster: Cluster) -> None:
    tally = Tally()
    customers = [uuid4() for _ in range(8)]
    actions = 40
    ready_took: list[float] = []

    async def restart() -> None:
        await tally.reached(len(customers) * actions // 3)
        ready_took.extend(await cluster.outage("fast"))

    await under_load(cluster.servers, customers, actions, tally, restart())
    counts = await count(cluster.database.url, SCHEMA, cluster.servers[0], tally, customers)
    report_load(
        "PostgreSQL restarted under load",
        counts,
        tally,
        outage_s=OUTAGE,
        slowest_ready_s=round(max(ready_took), 2),
    )
    assert tally.unexpected == []
    assert set(tally.failures) == {"503"}, "during the outage: 503 problems, nothing else"
    assert tally.slowest_failure < FAIL_FAST
    assert max(ready_took) < FAIL_FAST
    assert counts.acknowledged == len(customers) * actions
    assert (counts.stored, counts.duplicates, counts.lost) == (counts.acknowledged, 0, 0)
    async with httpx.AsyncClient() as client:
        for server in cluster.servers:
            assert (await client.get(f"{server.base}/ready")).status_code == 200


async def test_a_stream_and_a_runner_connected_through_a_crash_catch_up_exactly(
    cluster: Cluster,
) -> None:
    """A customer's live stream (on one process) and the analytics runner (which counts, so an
    event applied twice would show) follow the log while the database crashes and comes back.
    The client drops its stream during the outage and opens it again with `Last-Event-ID`
    (refused 503 until the database is back): what it receives is every event once, in order."""
    customer = uuid4()
    streamed: list[int] = []
    reconnects = 0
    stop = asyncio.Event()
    watcher, writer = cluster.servers
    async with httpx.AsyncClient(timeout=30) as client:
        consent = await client.put(
            f"{writer.base}/v1/me/consents/analytics",
            json={"given": True, "policy_version": "2026-01"},
            headers=bearer(customer),
        )
        assert consent.status_code == 200, consent.text

    dropped = asyncio.Event()
    last: str | None = None

    async def listen() -> None:
        nonlocal last
        headers = bearer(customer) | ({"Last-Event-ID": last} if last else {})
        url = f"{watcher.base}/v1/me/session/events"
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(30, read=60)) as client,
            client.stream("GET", url, headers=headers) as answer,
        ):
            if answer.status_code != 200:
                assert answer.status_code == 503, answer.status_code
                return
            async for message in _messages(answer):
                last = message.get("id", last)
                if message.get("event") == "cart.item_added":
                    streamed.append(int(message["id"]))

    async def follow() -> None:
        """Listen; whenever the stream ends, or the client drops it (as a phone losing its
        network does), open it again from the last id received."""
        nonlocal reconnects
        while not stop.is_set():
            stream = asyncio.create_task(listen())
            drop = asyncio.create_task(dropped.wait())
            await asyncio.wait({stream, drop}, return_when=asyncio.FIRST_COMPLETED)
            drop.cancel()
            if dropped.is_set():
                dropped.clear()
                stream.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.TransportError):
                await stream
            if not stop.is_set():
                reconnects += 1
                await asyncio.sleep(0.2)

    follower = asyncio.create_task(follow())
    tally = Tally()
    await asyncio.sleep(0.5)  # the stream is open
    adding = asyncio.create_task(add_items([writer], customer, 30, tally))
    await tally.reached(10)
    await cluster.outage("immediate", meanwhile=dropped.set)
    await adding
    expected = await _positions(cluster.database.url, customer)
    assert len(expected) == 30
    await _until(lambda: len(streamed) >= len(expected))
    stop.set()
    follower.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await follower
    counted, actions = await _analytics(cluster.database.url, customer, expected)
    figures = {
        "events": len(expected),
        "streamed": len(streamed),
        "distinct": len(set(streamed)),
        "reconnects": reconnects,
        "actions": actions,
        "counted by analytics": counted,
    }
    report("A stream and a runner through a PostgreSQL crash", **figures)
    assert streamed == expected, figures  # every event once, in order
    assert counted == actions, figures  # the runner applied each event once
    assert reconnects >= 1, "the stream was dropped during the outage"


async def _until(condition: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "never caught up"
        await asyncio.sleep(0.1)


async def _messages(answer: httpx.Response) -> AsyncIterator[dict[str, str]]:
    """The stream's messages, each as its fields (`id`, `event`, `data`, `retry`)."""
    message: dict[str, str] = {}
    async for line in answer.aiter_lines():
        if not line:
            if message:
                yield message
            message = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            message[name] = value.removeprefix(" ")


async def _positions(url: str, customer: UUID) -> list[int]:
    async with connected(url, SCHEMA) as conn:
        rows = await conn.fetch(
            "SELECT position FROM events WHERE subject_id = $1 AND topic LIKE '%Cart.ItemAdded'"
            " ORDER BY position",
            customer,
        )
    return [row["position"] for row in rows]


async def _analytics(url: str, customer: UUID, positions: list[int]) -> tuple[int, int]:
    """(actions the analytics projection counted, the customer's actions in the log), once its
    runner has passed the last of them. The customer is the only one here who consented to
    analytics, so every count is theirs."""
    async with connected(url, SCHEMA) as conn:
        deadline = time.monotonic() + 30
        while (
            await conn.fetchval("SELECT position FROM tracking WHERE name = 'analytics'") or 0
        ) < positions[-1]:
            assert time.monotonic() < deadline, "the analytics runner never caught up"
            await asyncio.sleep(0.1)
        counted = await conn.fetchval("SELECT coalesce(sum(actions), 0) FROM analytics_daily")
        actions = await conn.fetchval(
            "SELECT count(*) FROM events WHERE subject_id = $1 AND topic LIKE 'aggregates.cart%'",
            customer,
        )
    return int(counted), int(actions)


async def test_after_a_restart_every_process_hears_an_erasure(cluster: Cluster) -> None:
    """Both processes' broadcast connections come back by themselves (each heartbeats again),
    and so do their key vault's and live feed's LISTEN connections (each says so in its log);
    an erasure made through one is then acknowledged by both, and the other answers 410 at
    once (its key cache, off while its LISTEN was lost, started afresh)."""
    customer, officer = uuid4(), bearer(uuid4(), "compliance", None)
    first, second = cluster.servers
    mine = bearer(customer)
    async with httpx.AsyncClient(timeout=30) as client:
        added = await client.post(f"{second.base}/v1/me/cart/items", json=MUG, headers=mine)
        assert added.status_code == 200
        assert (await client.get(f"{second.base}/v1/me/cart", headers=mine)).status_code == 200
        said_before = [_said(server) for server in cluster.servers]
        await cluster.outage("fast")
        back = await _heard_again(cluster.database.url, len(cluster.servers))
        await _until(
            lambda: all(
                _listening_again(server, before)
                for server, before in zip(cluster.servers, said_before, strict=True)
            )
        )
        erasure = await client.post(
            f"{first.base}/v1/privacy/erasures", json={"subject_id": str(customer)}, headers=officer
        )
        assert erasure.status_code in (200, 201, 202), erasure.text
        request = erasure.json()
        assert request["state"] == "completed", request
        certificate = (
            await client.get(f"{first.base}{request['certificate']}", headers=officer)
        ).json()
        after = await client.get(f"{second.base}/v1/me/cart", headers=mine)
    shred = certificate["certificate"]["erasure"]
    report(
        "An erasure after a PostgreSQL restart",
        processes_heard_again_after_s=round(back, 2),
        processes_acknowledged=len(shred["processes_acknowledged"]),
        processes_missing=len(shred["processes_missing"]),
    )
    assert (len(shred["processes_acknowledged"]), shred["processes_missing"]) == (2, [])
    assert after.status_code == 410


async def _heard_again(url: str, processes: int, seconds: float = 30) -> float:
    """Seconds until `processes` processes heartbeat again (within `continuity.processes.LIVE`)
    after the database came back. Only a heartbeat since its start counts: the outage is shorter
    than `LIVE`, so the heartbeats from before it still look live while a process is between
    two tries at reconnecting, and nobody waits for it then."""
    started = time.monotonic()
    async with connected(url, SCHEMA) as conn:
        while (
            await conn.fetchval(
                "SELECT count(*) FROM processes WHERE stopped_at IS NULL"
                " AND heartbeat_at > greatest(now() - $1::interval, pg_postmaster_start_time())",
                LIVE,
            )
            < processes
        ):
            assert time.monotonic() - started < seconds, "a process never came back"
            await asyncio.sleep(0.1)
    return time.monotonic() - started


LISTENING_AGAIN = ("key vault: listening on", "live feed: listening on")
"""What the key vault's and the live feed's listeners log once their LISTEN is back."""


def _listening_again(server: Server, before: tuple[int, ...]) -> bool:
    return all(now > then for now, then in zip(_said(server), before, strict=True))


def _said(server: Server) -> tuple[int, ...]:
    """How often `server` has logged each of `LISTENING_AGAIN`."""
    log = server.out.read_text(errors="replace")
    return tuple(log.count(line) for line in LISTENING_AGAIN)
