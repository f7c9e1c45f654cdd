"""What the fault tests share: `continuity run` processes to kill and restart on a fixed port,
and a load of customers adding to their carts, each action with its own `Idempotency-Key`,
retried with the same key until it is acknowledged, whatever happens to the servers or the
database in between. `count` then holds the log to what the clients saw."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx

from api.auth import Role, issue_token
from api.problems import RETRY_AFTER_UNAVAILABLE
from tests.helpers import SECRET
from tests.server import free_port

RETRY_PAUSE = 0.1
"""Seconds a client of the load waits before it sends an action again. A real client waits the
`Retry-After` a 503 names; the test's clients retry sooner so that the suite stays short (the
header's value is checked on every 503)."""
FAIL_FAST = 5.0
"""Seconds within which a request during an outage must be answered (the servers here are
configured with one-second pool timeouts): far from an unbounded wait."""
ATTEMPTS = 300
"""Attempts after which an action that was never acknowledged fails the test."""


def bearer(subject: UUID, role: Role = "customer", device: str | None = "phone") -> dict[str, str]:
    token = issue_token(SECRET, subject, role, device, timedelta(hours=1))
    return {"Authorization": f"Bearer {token}"}


class Server:
    """One `continuity run` process (one worker) on a port of its own, kept across restarts."""

    def __init__(self, env: dict[str, str], logs: Path, name: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            **env,
            "CONTINUITY_WORKERS": "1",
            "CONTINUITY_PORT": str(self.port),
        }
        self.out = logs / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        with self.out.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "continuity.cli", "run"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.base}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert self.process.poll() is None, self.out.read_text()
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no handler runs, no connection is closed, nothing is flushed."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int | None:
        """SIGTERM, and the exit code (None if it had to be killed after 30 s)."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.terminate()
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            return None


@dataclass
class Tally:
    """What the load's clients saw."""

    acknowledged: dict[UUID, set[str]] = field(default_factory=dict)
    """Per customer, the SKUs whose action was answered 200."""
    retried: set[str] = field(default_factory=set)
    """Actions sent more than once (by their Idempotency-Key)."""
    failures: Counter[str] = field(default_factory=Counter)
    """Attempts that were not acknowledged, by answer (a status, or a transport error)."""
    slowest_failure: float = 0.0
    """Seconds the slowest attempt took to fail: a hang would show here."""
    unexpected: list[str] = field(default_factory=list)

    progress: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def total(self) -> int:
        return sum(len(skus) for skus in self.acknowledged.values())

    async def reached(self, acknowledged: int) -> None:
        """Return once `acknowledged` actions have been."""
        async with self.progress:
            await self.progress.wait_for(lambda: self.total >= acknowledged)

    async def acknowledge(self, customer: UUID, sku: str) -> None:
        async with self.progress:
            self.acknowledged[customer].add(sku)
            self.progress.notify_all()

    def summary(self) -> dict[str, Any]:
        return {
            "retried": len(self.retried),
            "failed attempts": dict(self.failures),
            "slowest failure s": round(self.slowest_failure, 2),
        }


async def add_items(
    servers: list[Server], customer: UUID, actions: int, tally: Tally, offset: int = 0
) -> None:
    """`actions` cart adds for `customer`, spread over `servers`; each retried with its own
    Idempotency-Key (on the next server) until it is acknowledged."""
    headers = bearer(customer)
    tally.acknowledged.setdefault(customer, set())
    async with httpx.AsyncClient(timeout=httpx.Timeout(FAIL_FAST * 2)) as client:
        for n in range(actions):
            sku, key = f"SKU-{n}", str(uuid4())
            body = {"sku": sku, "name": f"Item {n}", "unit_price": "1.00", "quantity": 1}
            for attempt in range(ATTEMPTS):
                server = servers[(n + offset + attempt) % len(servers)]
                started = time.monotonic()
                try:
                    answer = await client.post(
                        f"{server.base}/v1/me/cart/items",
                        json=body,
                        headers={**headers, "Idempotency-Key": key},
                    )
                except httpx.TransportError as exc:
                    outcome = type(exc).__name__
                else:
                    if answer.status_code == 200:
                        await tally.acknowledge(customer, sku)
                        break
                    outcome = str(answer.status_code)
                    if not _unavailable(answer):
                        tally.unexpected.append(f"{answer.status_code} {answer.text[:200]}")
                tally.failures[outcome] += 1
                tally.retried.add(key)
                tally.slowest_failure = max(tally.slowest_failure, time.monotonic() - started)
                await asyncio.sleep(RETRY_PAUSE)
            else:
                raise AssertionError(f"{sku} of {customer} was never acknowledged")


async def under_load(
    servers: list[Server],
    customers: list[UUID],
    actions: int,
    tally: Tally,
    fault: Awaitable[None],
) -> None:
    """`actions` cart adds for each of `customers` over `servers`, while `fault` happens."""
    await asyncio.gather(
        fault,
        *(
            add_items(servers, customer, actions, tally, offset=n)
            for n, customer in enumerate(customers)
        ),
    )


def _unavailable(answer: httpx.Response) -> bool:
    """A 503 as documented: a problem naming the database, with `Retry-After`."""
    return (
        answer.status_code == 503
        and answer.headers.get("content-type", "").startswith("application/problem+json")
        and answer.json().get("type", "").endswith("/database-unavailable")
        and answer.headers.get("Retry-After") == str(RETRY_AFTER_UNAVAILABLE)
    )


@asynccontextmanager
async def connected(url: str, schema: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the test's own to `schema`, to look at what the servers wrote."""
    conn = await asyncpg.connect(url, server_settings={"search_path": schema})
    try:
        yield conn
    finally:
        await conn.close()


@dataclass(frozen=True)
class Counts:
    acknowledged: int
    stored: int
    duplicates: int
    lost: int


async def count(
    url: str, schema: str, server: Server, tally: Tally, customers: list[UUID]
) -> Counts:
    """The log against what the clients saw. `stored` counts the item-added events of the
    load's customers; an action applied twice would be a second event and a quantity of 2 in
    the cart (`duplicates`); an acknowledged SKU missing from the cart is `lost`."""
    async with connected(url, schema) as conn:
        stored = await conn.fetchval(
            "SELECT count(*) FROM events WHERE subject_id = ANY($1::uuid[])"
            " AND topic LIKE '%Cart.ItemAdded'",
            customers,
        )
    duplicates = lost = 0
    async with httpx.AsyncClient(timeout=30) as client:
        for customer in customers:
            answer = await client.get(f"{server.base}/v1/me/cart", headers=bearer(customer))
            answer.raise_for_status()
            quantities = {line["sku"]: line["quantity"] for line in answer.json()["items"]}
            duplicates += sum(q - 1 for q in quantities.values())
            lost += len(tally.acknowledged[customer] - quantities.keys())
    duplicates = max(duplicates, stored - tally.total)
    return Counts(tally.total, stored, duplicates, lost)
