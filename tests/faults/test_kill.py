"""kill -9 of an API process under load: every action a client saw acknowledged is in the log
exactly once, none is in it twice, and every retried action ended acknowledged. The two
processes are killed in turn, three times in all, each restarted at once; an action cut off
mid-request (committed or not) is sent again to the other process with its key."""

from __future__ import annotations

import asyncio
from uuid import UUID, uuid4

import httpx
import pytest

from tests.faults.cluster import Server, Tally, bearer, count, under_load
from tests.faults.report import report_load

pytestmark = pytest.mark.anyio

CUSTOMERS = 16
KILLS = 3
ACTIONS = 40
"""Cart adds per customer (a cart holds at most 100 lines)."""


async def test_kill_9_under_load_loses_and_doubles_nothing(
    servers: tuple[str, list[Server]], database_url: str
) -> None:
    schema, both = servers
    tally = Tally()
    customers = [uuid4() for _ in range(CUSTOMERS)]

    async def kill_and_restart() -> None:
        for n in range(KILLS):
            await tally.reached(CUSTOMERS * ACTIONS * (n + 1) // (KILLS + 1))
            victim = both[n % 2]
            victim.kill()
            await asyncio.sleep(0.3)  # requests meanwhile meet a closed port, and go elsewhere
            await asyncio.to_thread(victim.start)

    await under_load(both, customers, ACTIONS, tally, kill_and_restart())
    counts = await count(database_url, schema, both[0], tally, customers)
    cut_off = sum(n for outcome, n in tally.failures.items() if outcome != "ConnectError")
    title = f"kill -9 of an API process, {KILLS} times, under load"
    report_load(title, counts, tally, cut_off_mid_request=cut_off)
    assert tally.unexpected == []
    assert tally.failures, "the kill met no request: it proved nothing"
    assert counts.acknowledged == CUSTOMERS * ACTIONS  # every action ended acknowledged
    assert (counts.stored, counts.duplicates, counts.lost) == (counts.acknowledged, 0, 0)
    for server in both:  # each restarted process serves what was written while it was down
        assert (await _cart_after_restart(server, customers[0])) == ACTIONS


async def _cart_after_restart(server: Server, customer: UUID) -> int:
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"{server.base}/v1/me/cart", headers=bearer(customer))
        lines: list[object] = answer.json()["items"]
        return len(lines)
