"""Tampering with stored ciphertext is detected loudly, never read back as data."""

from __future__ import annotations

from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest

from continuity.errors import IntegrityViolation
from continuity.runtime import Runtime
from tests.helpers import MUG, TokenFactory

pytestmark = pytest.mark.anyio

TEA = {"sku": "TEA-7", "name": "Green tea", "unit_price": "4.20", "quantity": 3}


async def tamper(pool: asyncpg.Pool, sql: str, *args: object) -> None:
    """What an attacker with write access to the database could do: bypass the append-only
    trigger and change rows in place."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE events DISABLE TRIGGER events_no_update_delete")
        await conn.execute(sql, *args)
        await conn.execute("ALTER TABLE events ENABLE TRIGGER events_no_update_delete")


async def a_cart(client: httpx.AsyncClient, auth: TokenFactory) -> tuple[UUID, dict[str, str]]:
    headers = auth(uuid4())
    await client.post("/v1/me/cart/items", json=MUG, headers=headers)
    response = await client.post("/v1/me/cart/items", json=TEA, headers=headers)
    return UUID(response.json()["cart_id"]), headers


async def a_cart_whose_view_is_behind(
    client: httpx.AsyncClient, auth: TokenFactory, runtime: Runtime
) -> tuple[UUID, dict[str, str]]:
    """A cart of three events whose session row is the one written after its second: an
    action no longer replays a cart's history (it stands the cart up from the view written in
    the same commit as its events), so a test of what reading the log finds makes the action
    read it: it finds the view behind the stream, and loads the cart from the log."""
    headers = auth(uuid4())
    await client.post("/v1/me/cart/items", json=MUG, headers=headers)
    subject = (await client.get("/v1/me/session", headers=headers)).json()["subject_id"]
    old = await runtime.pool.fetchrow(
        "SELECT key_version, position, body FROM session_views WHERE subject_id = $1",
        UUID(subject),
    )
    assert old is not None
    response = await client.post("/v1/me/cart/items", json=TEA, headers=headers)
    await runtime.pool.execute(
        "UPDATE session_views SET key_version = $2, position = $3, body = $4 WHERE subject_id = $1",
        UUID(subject),
        *old.values(),
    )
    return UUID(response.json()["cart_id"]), headers


async def test_swapping_two_events_payloads_fails_to_read(
    client: httpx.AsyncClient, auth: TokenFactory, runtime: Runtime
) -> None:
    cart_id, headers = await a_cart_whose_view_is_behind(client, auth, runtime)
    await tamper(
        runtime.pool,
        "UPDATE events e SET payload = o.payload FROM events o"
        " WHERE e.stream_id = $1 AND o.stream_id = $1"
        " AND ((e.version = 2 AND o.version = 3) OR (e.version = 3 AND o.version = 2))",
        cart_id,
    )
    records = await runtime.store.select_events(cart_id)
    with pytest.raises(IntegrityViolation, match="version 2"):
        await runtime.mapper.to_envelopes(records)
    response = await client.post("/v1/me/cart/items", json=MUG, headers=headers)
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["title"] == "Stored data failed its integrity check"


async def test_a_flipped_byte_fails_to_read(
    client: httpx.AsyncClient, auth: TokenFactory, runtime: Runtime
) -> None:
    cart_id, _ = await a_cart(client, auth)
    await tamper(
        runtime.pool,
        "UPDATE events SET payload = set_byte(payload, 20, get_byte(payload, 20) # 1)"
        " WHERE stream_id = $1 AND version = 3",
        cart_id,
    )
    records = await runtime.store.select_events(cart_id)
    with pytest.raises(IntegrityViolation, match="version 3"):
        await runtime.mapper.to_envelopes(records)


async def test_an_event_moved_to_another_stream_fails_to_read(
    client: httpx.AsyncClient, auth: TokenFactory, runtime: Runtime
) -> None:
    """The associated data binds a payload to its row: copying ciphertext between customers'
    rows does not move data between them."""
    first, _ = await a_cart(client, auth)
    second, _ = await a_cart(client, auth)
    await tamper(
        runtime.pool,
        "UPDATE events e SET payload = o.payload FROM events o"
        " WHERE e.stream_id = $2 AND e.version = 2 AND o.stream_id = $1 AND o.version = 2",
        first,
        second,
    )
    with pytest.raises(IntegrityViolation):
        await runtime.mapper.to_envelopes(await runtime.store.select_events(second))


async def test_a_tampered_session_view_fails_to_read(
    client: httpx.AsyncClient, auth: TokenFactory, runtime: Runtime
) -> None:
    _, headers = await a_cart(client, auth)
    await runtime.pool.execute(
        "UPDATE session_views SET body = set_byte(body, 30, get_byte(body, 30) # 1)"
    )
    response = await client.get("/v1/me/session", headers=headers)
    assert response.status_code == 500
    assert response.json()["type"].endswith("/integrity")


@pytest.mark.parametrize(
    "change",
    [
        "channel = 'store'",
        "recorded_at = recorded_at + interval '1 microsecond'",
        "topic = 'aggregates.cart:Cart.ItemRemoved'",
    ],
)
async def test_a_changed_column_of_an_event_fails_to_read(
    client: httpx.AsyncClient, auth: TokenFactory, runtime: Runtime, change: str
) -> None:
    """Every column read back as part of the event is bound to its payload: the channel
    becomes the event's metadata, the time its timestamp."""
    cart_id, _ = await a_cart(client, auth)
    await tamper(runtime.pool, f"UPDATE events SET {change} WHERE stream_id = $1", cart_id)
    with pytest.raises(IntegrityViolation, match="version 1"):
        await runtime.mapper.to_envelopes(await runtime.store.select_events(cart_id))


async def test_a_stale_session_row_put_back_is_rebuilt_from_the_log_not_folded_onto(
    client: httpx.AsyncClient, auth: TokenFactory, runtime: Runtime
) -> None:
    """A customer's own older session row, put back (a restored copy, say): the next write
    notices the view skipped versions and rebuilds it from the log, so nothing vanishes."""
    headers = auth(uuid4())
    await client.post("/v1/me/cart/items", json=MUG, headers=headers)
    old = await runtime.pool.fetchrow("SELECT key_version, position, body FROM session_views")
    assert old is not None
    await client.post("/v1/me/cart/items", json=TEA, headers=headers)
    await runtime.pool.execute(
        "UPDATE session_views SET key_version = $1, position = $2, body = $3",
        old["key_version"],
        old["position"],
        old["body"],
    )
    lid = {"sku": "LID-2", "name": "A lid", "unit_price": "1.00", "quantity": 1}
    response = await client.post("/v1/me/cart/items", json=lid, headers=headers)
    assert response.status_code == 200, response.text
    assert [i["sku"] for i in response.json()["items"]] == ["MUG-1", "TEA-7", "LID-2"]
    resumed = await client.get("/v1/me/session", headers=headers)
    assert [i["sku"] for i in resumed.json()["cart"]["items"]] == ["MUG-1", "TEA-7", "LID-2"]


async def test_a_missing_event_in_the_middle_of_a_stream_is_an_integrity_problem(
    client: httpx.AsyncClient, auth: TokenFactory, runtime: Runtime
) -> None:
    cart_id, headers = await a_cart_whose_view_is_behind(client, auth, runtime)
    await tamper(runtime.pool, "DELETE FROM events WHERE stream_id = $1 AND version = 2", cart_id)
    response = await client.post("/v1/me/cart/items", json=MUG, headers=headers)
    assert response.status_code == 500
    assert response.json()["type"].endswith("/integrity"), response.text
