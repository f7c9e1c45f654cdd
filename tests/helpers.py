"""Constants and types shared by tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx
from litestar import Litestar

from aggregates.activity import Activity
from aggregates.cart import Cart
from aggregates.conversation import Conversation
from aggregates.metadata import EventMeta
from api.app import create_app
from continuity.runner import ProjectionRunner
from continuity.settings import Settings
from privacy.master_key import Keyring
from projections.envelope import Envelope

SECRET = "test-secret-" + "x" * 40

MUG = {"sku": "MUG-1", "name": "Blue mug", "unit_price": "12.50", "quantity": 1}
"""The body of one valid `POST /v1/me/cart/items`."""

TokenFactory = Callable[..., dict[str, str]]
"""auth(customer_id, device="phone", role="customer") -> headers with a bearer token."""


def envelopes_of(
    cart: Cart | Conversation | Activity, device: str = "phone", start: int = 1
) -> list[Envelope]:
    """The aggregate's pending events as a fold would receive them, at positions from `start`."""
    return [
        Envelope(
            position=start + i,
            stream_id=cart.id,
            version=event.originator_version,
            subject_id=cart.subject_id,
            topic=type(event).__qualname__,
            channel="app",
            recorded_at=datetime.now(UTC),
            key_version=1,
            event=event,  # type: ignore[arg-type]
            meta=EventMeta("app", device),
        )
        for i, event in enumerate(cart.collect_events())
    ]


@asynccontextmanager
async def serve(
    settings: Settings, database_url: str, keyring: Keyring
) -> AsyncIterator[tuple[Litestar, httpx.AsyncClient]]:
    """The app with `settings`, started, and a client of it in-process."""
    app = create_app(settings, database_url=database_url, keyring=keyring)
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://continuity.test") as c:
            yield app, c


async def run_to_head(runner: ProjectionRunner) -> None:
    """Step `runner` until it has applied every event of its topics now in the log. A page can
    come back empty while a transaction elsewhere in the cluster holds the settled horizon
    back (another test run on the same server, say): then it waits and looks again."""
    head = await runner.store.pool.fetchval(
        "SELECT coalesce(max(position), 0) FROM events WHERE topic = ANY($1::text[])",
        list(runner.projection.topics),
    )
    for _ in range(2_000):
        if not await runner.step():
            if runner.position >= head:
                return
            await asyncio.sleep(0.01)
    raise AssertionError(f"the runner stayed at {runner.position}, short of {head}")
