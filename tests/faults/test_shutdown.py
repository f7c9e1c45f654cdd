"""Graceful shutdown: SIGTERM stops accepting, lets the requests in flight finish (within
`CONTINUITY_SHUTDOWN_GRACE`), ends live streams with a `retry:` hint, closes the pool and stops
the embedded database; nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from uuid import uuid4

import asyncpg
import httpx
import pytest

from tests.faults.cluster import Server, Tally, bearer, count, under_load
from tests.faults.report import report, report_load
from tests.helpers import MUG, SECRET

pytestmark = pytest.mark.anyio

GRACE = 10.0
"""`CONTINUITY_SHUTDOWN_GRACE`'s default: a stopping server exits within it (and a margin)."""
STOPPED = (0, -signal.SIGTERM)
"""How `continuity run` exits on SIGTERM (uvicorn re-raises the signal once it is done)."""


async def test_a_request_in_flight_finishes_and_new_ones_are_refused(
    servers: tuple[str, list[Server]], database_url: str
) -> None:
    """An action held up by a lock when SIGTERM arrives is still answered 200 and recorded;
    meanwhile the stopping server takes no new connection, and its open stream ends with a hint
    to reconnect."""
    schema, (stopping, other) = servers
    assert stopping.process is not None
    customer = uuid4()
    blocker = await asyncpg.connect(database_url, server_settings={"search_path": schema})
    async with httpx.AsyncClient(timeout=30) as client:
        stream_lines: list[str] = []

        async def watch() -> None:
            url = f"{stopping.base}/v1/me/session/events"
            async with client.stream("GET", url, headers=bearer(uuid4())) as answer:
                stream_lines.extend([line async for line in answer.aiter_lines()])

        watching = asyncio.create_task(watch())
        lock = blocker.transaction()
        await lock.start()
        await blocker.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        in_flight = asyncio.create_task(
            client.post(f"{stopping.base}/v1/me/cart/items", json=MUG, headers=bearer(customer))
        )
        await asyncio.sleep(0.5)  # the request is in the server, waiting on the lock
        signalled = time.monotonic()
        stopping.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        async with httpx.AsyncClient() as fresh:  # a new connection, not the client's pooled one
            with pytest.raises(httpx.ConnectError):  # it takes no new connection
                await fresh.get(f"{stopping.base}/health")
        await lock.rollback()
        answer = await in_flight
        exit_code = await asyncio.to_thread(stopping.process.wait, GRACE + 5)
        took = time.monotonic() - signalled
        await asyncio.wait_for(watching, 5)
        cart = await client.get(f"{other.base}/v1/me/cart", headers=bearer(customer))
    await blocker.close()
    report("SIGTERM with a request in flight", answered=answer.status_code, exit_s=round(took, 2))
    assert answer.status_code == 200, answer.text
    assert exit_code in STOPPED
    assert [line["quantity"] for line in cart.json()["items"]] == [1]
    assert "retry: 2000" in stream_lines[-4:]
    assert ": ended: reconnect" in stream_lines[-4:]


async def test_sigterm_under_load_loses_nothing(
    servers: tuple[str, list[Server]], database_url: str
) -> None:
    schema, both = servers
    stopping = both[0]
    assert stopping.process is not None
    tally = Tally()
    customers = [uuid4() for _ in range(8)]
    actions = 30
    exit_codes: list[int] = []

    async def stop_and_restart() -> None:
        await tally.reached(len(customers) * actions // 3)
        assert stopping.process is not None
        stopping.process.send_signal(signal.SIGTERM)
        exit_codes.append(await asyncio.to_thread(stopping.process.wait, GRACE + 5))
        await asyncio.to_thread(stopping.start)

    await under_load(both, customers, actions, tally, stop_and_restart())
    counts = await count(database_url, schema, both[1], tally, customers)
    report_load("SIGTERM of an API process under load", counts, tally)
    assert exit_codes[0] in STOPPED
    assert tally.unexpected == []
    assert counts.acknowledged == len(customers) * actions
    assert (counts.stored, counts.duplicates, counts.lost) == (counts.acknowledged, 0, 0)


async def test_sigterm_stops_the_embedded_database(tmp_path: Path) -> None:
    """One process (the default on two cores) with the embedded PostgreSQL: SIGTERM stops it
    too, after the process closed its sessions (PostgreSQL's log would otherwise say it
    terminated them as it shut down)."""
    data = tmp_path / "data"
    env = {
        "CONTINUITY_DATABASE_URL": "",
        "CONTINUITY_DATA_DIR": str(data),
        "CONTINUITY_JWT_SECRET": SECRET,
        "CONTINUITY_MASTER_KEY": "",
    }
    server = Server(env, tmp_path, "embedded")
    server.start()
    assert server.process is not None
    postmaster = int((data / "postgres" / "postmaster.pid").read_text().split()[0])
    server.process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(server.process.wait, GRACE + 5) in STOPPED
    assert not _alive(postmaster)
    log = (data / "postgres" / "log").read_text()
    assert "database system is shut down" in log
    assert "terminating connection due to administrator command" not in log  # none left open


def _alive(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}").stat()
    except FileNotFoundError:
        return False
    return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
