"""kill -9 of an API process under load: every action a client saw acknowledged is in the log
exactly once, none is in it twice, and every retried action ended acknowledged. The two
processes are killed in turn, three times in all, each restarted at once; an action cut off
mid-request (committed or not) is sent again to the other process with its key."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID, uuid4

import httpx
import pytest

from privacy.master_key import MasterKey
from tests.continuity.test_cli import drop_schema
from tests.faults.cluster import Server, Tally, add_items, bearer, count
from tests.faults.report import report_load
from tests.helpers import SECRET

pytestmark = pytest.mark.anyio

CUSTOMERS = 16
KILLS = 3
ACTIONS = 40
"""Cart adds per customer (a cart holds at most 100 lines)."""


@pytest.fixture
def servers(database_url: str, tmp_path: Path) -> Iterator[tuple[str, list[Server]]]:
    schema = f"test_kill_{uuid4().hex[:12]}"
    env = {
        "CONTINUITY_DATABASE_URL": database_url,
        "CONTINUITY_DATABASE_SCHEMA": schema,
        "CONTINUITY_MASTER_KEY": MasterKey.generate().to_text(),
        "CONTINUITY_JWT_SECRET": SECRET,
        "CONTINUITY_DATA_DIR": str(tmp_path / "data"),
        "CONTINUITY_LOG_LEVEL": "WARNING",
    }
    both = [Server(env, tmp_path, "a"), Server(env, tmp_path, "b")]
    try:
        for server in both:
            server.start()
        yield schema, both
    finally:
        for server in both:
            server.stop()
        drop_schema(database_url, schema)


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

    await asyncio.gather(
        kill_and_restart(),
        *(
            add_items(both, customer, ACTIONS, tally, offset=n)
            for n, customer in enumerate(customers)
        ),
    )
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
