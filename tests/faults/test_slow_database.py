"""A slow database: a statement stuck behind a lock, or no connection free in the pool, is
answered 503 `database-unavailable` with `Retry-After` once the configured timeout passes,
never an unbounded wait; the retry of the same action is then recorded once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest
from asyncpg.pool import PoolConnectionProxy

from api.problems import RETRY_AFTER_UNAVAILABLE
from continuity.runtime import Runtime
from tests.conftest import AppFactory, client_of
from tests.helpers import MUG, TokenFactory

pytestmark = pytest.mark.anyio

BOUND = 10.0
"""Seconds a request may take here before the test calls it a hang: far above the timeouts
configured, far below what an unbounded wait would take."""


def assert_unavailable(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["type"].endswith("/database-unavailable")
    assert answer.headers["Retry-After"] == str(RETRY_AFTER_UNAVAILABLE)


async def items_recorded(runtime: Runtime, customer: UUID) -> int:
    count: int = await runtime.pool.fetchval(
        "SELECT count(*) FROM events WHERE subject_id = $1 AND topic LIKE '%ItemAdded'", customer
    )
    return count


@asynccontextmanager
async def events_locked(database_url: str, schema: str) -> AsyncIterator[None]:
    """Another session holds the log locked against every reader and writer."""
    blocker = await asyncpg.connect(database_url, server_settings={"search_path": schema})
    try:
        async with blocker.transaction():
            await blocker.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
            yield
    finally:
        await blocker.close()


async def test_a_statement_stuck_behind_a_lock_is_a_503_and_its_retry_is_recorded_once(
    started: AppFactory, auth: TokenFactory, database_url: str, schema: str
) -> None:
    async with started(statement_timeout=0.5) as app, client_of(app) as client:
        warm = await client.post("/v1/me/cart/items", json=MUG, headers=auth(uuid4()))
        assert warm.status_code == 200
        customer = uuid4()
        headers = {**auth(customer), "Idempotency-Key": str(uuid4())}
        async with events_locked(database_url, schema):
            stuck = await asyncio.wait_for(
                client.post("/v1/me/cart/items", json=MUG, headers=headers), BOUND
            )
            assert_unavailable(stuck)
        again = await client.post("/v1/me/cart/items", json=MUG, headers=headers)
        assert again.status_code == 200, again.text
        twice = await client.post("/v1/me/cart/items", json=MUG, headers=headers)
        assert twice.json() == again.json()
        assert await items_recorded(app.state.runtime, customer) == 1
        assert [line["quantity"] for line in again.json()["items"]] == [1]


async def test_a_pool_with_no_connection_free_answers_503_and_ready_says_so(
    started: AppFactory, auth: TokenFactory
) -> None:
    async with started(pool_min_size=1, pool_max_size=3, pool_timeout=0.3) as app:
        runtime: Runtime = app.state.runtime
        customer = auth(uuid4())
        held: list[PoolConnectionProxy] = []
        async with client_of(app) as client:
            assert (await client.get("/v1/me/session", headers=customer)).status_code == 200
            try:
                while True:
                    held.append(await runtime.pool.acquire(timeout=0.3))
            except TimeoutError:
                pass
            assert held, "the pool had no connection to take"
            starved = await asyncio.wait_for(client.get("/v1/me/session", headers=customer), BOUND)
            assert_unavailable(starved)
            ready = await asyncio.wait_for(client.get("/ready"), BOUND)
            assert (ready.status_code, ready.json()["status"]) == (503, "unavailable")
            for conn in held:
                await runtime.pool.release(conn)
            assert (await client.get("/v1/me/session", headers=customer)).status_code == 200
            assert (await client.get("/ready")).status_code == 200


async def test_the_timeouts_are_the_pools(started: AppFactory) -> None:
    """What the settings say is what each pooled session runs with."""
    async with started(statement_timeout=1.25, pool_timeout=0.75) as app:
        runtime: Runtime = app.state.runtime
        assert await runtime.pool.fetchval("SHOW statement_timeout") == "1250ms"
        assert runtime.pool.acquire_timeout == 0.75  # type: ignore[attr-defined]
