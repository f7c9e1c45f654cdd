"""Writes racing an erasure: each lands before it (and is counted) or is refused, never after."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import cast
from uuid import UUID, uuid4

import httpx
import pytest
from eventsourcing.domain import DomainEvent

from aggregates.cart import Cart
from aggregates.metadata import EventMeta
from continuity.db import Conn
from continuity.erasure import shred_subject
from continuity.errors import SubjectErased
from continuity.mapper import EventMapper
from continuity.runtime import Runtime
from continuity.store import EventStore, NewEvent
from privacy.vault import KeyVault
from tests.helpers import TokenFactory

pytestmark = pytest.mark.anyio

APP = EventMeta("app", "phone")


async def a_sealed_cart(vault: KeyVault, subject: UUID) -> tuple[Cart, list[NewEvent]]:
    """A new cart with one item, its events sealed with the subject's key now, not appended."""
    cart = Cart(subject_id=subject)
    cart.add_item("MUG-1", "Blue mug", Decimal("12.50"), 1)
    key = await vault.key_for_writing(subject)
    events = cast(list[DomainEvent], cart.collect_events())
    return cart, [EventMapper.seal_event(key, APP, event, uuid4()) for event in events]


async def test_writes_racing_an_erasure_over_http_land_before_it_or_get_410(
    client: httpx.AsyncClient, auth: TokenFactory, runtime: Runtime
) -> None:
    for attempt in range(8):
        customer = uuid4()
        headers = auth(customer)
        first = {"sku": "MUG-1", "name": "Blue mug", "unit_price": "12.50"}
        assert (await client.post("/v1/me/cart/items", json=first, headers=headers)).is_success

        async def write(i: int, headers: dict[str, str] = headers) -> httpx.Response:
            item = {"sku": f"SKU-{i}", "name": "Green tea", "unit_price": "4.20"}
            return await client.post("/v1/me/cart/items", json=item, headers=headers)

        writes = [asyncio.create_task(write(i)) for i in range(6)]
        await asyncio.sleep(attempt * 0.003)
        certificate = await shred_subject(runtime.store, runtime.vault, customer)
        statuses = [r.status_code for r in await asyncio.gather(*writes)]

        assert set(statuses) <= {200, 409, 410}, statuses
        in_log = await runtime.pool.fetchval(
            "SELECT count(*) FROM events WHERE subject_id = $1", customer
        )
        assert certificate.events_unreadable == in_log, (attempt, statuses)
        assert in_log == 2 + statuses.count(200), (attempt, statuses)
        for table in ("session_views", "subject_keys"):
            left = await runtime.pool.fetchval(
                f"SELECT count(*) FROM {table} WHERE subject_id = $1", customer
            )
            assert left == 0, (table, attempt, statuses)
        after = await client.get("/v1/me/session", headers=headers)
        assert after.status_code == 410


async def test_a_write_sealed_before_the_erasure_is_refused_after_it(
    store: EventStore, vault: KeyVault
) -> None:
    subject = uuid4()
    cart, rows = await a_sealed_cart(vault, subject)
    await shred_subject(store, vault, subject)
    with pytest.raises(SubjectErased):
        await store.append(rows, {cart.id: 0})
    assert await store.select_events(cart.id) == []


async def test_an_erasure_waits_for_the_append_in_flight_and_counts_it(
    store: EventStore, vault: KeyVault
) -> None:
    subject = uuid4()
    cart, rows = await a_sealed_cart(vault, subject)
    inserted, release = asyncio.Event(), asyncio.Event()

    async def hold_open(conn: Conn, positions: list[int]) -> None:
        inserted.set()
        await release.wait()

    writing = asyncio.create_task(store.append(rows, {cart.id: 0}, project=hold_open))
    await inserted.wait()
    erasing = asyncio.create_task(shred_subject(store, vault, subject))
    await asyncio.sleep(0.2)
    assert not erasing.done(), "the erasure did not wait for the append in flight"
    release.set()
    await writing
    certificate = await erasing
    assert certificate.events_unreadable == 2
