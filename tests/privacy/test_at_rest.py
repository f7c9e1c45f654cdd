"""No personal data in clear at rest: scan every byte of every table after real API writes."""

from __future__ import annotations

import logging
from uuid import uuid4

import asyncpg
import httpx
import pytest

from tests.helpers import TokenFactory

pytestmark = pytest.mark.anyio

ITEM_NAME = "Zanzibar Quokka Teapot 7731"
DEVICE = "Marguerite's Pixel 9000"
PERSONAL = [ITEM_NAME, DEVICE]


async def table_bytes(conn: asyncpg.Connection, schema: str) -> list[tuple[str, bytes]]:
    """Each table's rows as text (bytea columns appear hex-encoded), raw bytea columns too."""
    tables = await conn.fetch(
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = $1 AND table_type = 'BASE TABLE'",
        schema,
    )
    found = []
    for table in tables:
        name = table["table_name"]
        rows = await conn.fetch(f'SELECT t::text AS row FROM "{schema}"."{name}" t')
        found.append((name, "\n".join(r["row"] for r in rows).encode()))
        bytea_columns = await conn.fetch(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = $1 AND table_name = $2 AND data_type = 'bytea'",
            schema,
            name,
        )
        for column in bytea_columns:
            col = column["column_name"]
            values = await conn.fetch(f'SELECT "{col}" AS v FROM "{schema}"."{name}"')
            found.append((f"{name}.{col}", b"".join(bytes(v["v"]) for v in values if v["v"])))
    return found


async def test_a_scan_of_every_table_finds_no_personal_value(
    client: httpx.AsyncClient,
    auth: TokenFactory,
    database_url: str,
    schema: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    customer = uuid4()
    device = auth(customer, DEVICE)
    item = {"sku": "QT-7731", "name": ITEM_NAME, "unit_price": "77.31", "quantity": 2}
    assert (await client.post("/v1/me/cart/items", json=item, headers=device)).status_code == 200
    changed = await client.patch("/v1/me/cart/items/QT-7731", json={"quantity": 3}, headers=device)
    assert changed.status_code == 200
    bad = await client.post("/v1/me/cart/items", json={**item, "quantity": 9_999}, headers=device)
    assert bad.status_code == 422, "a domain rule refuses 3 + 9,999 of one item"
    session = await client.get("/v1/me/session", headers=auth(customer, "laptop"))
    assert ITEM_NAME in session.text
    assert DEVICE in session.text

    conn = await asyncpg.connect(database_url)
    try:
        scanned = await table_bytes(conn, schema)
    finally:
        await conn.close()
    names = {name for name, _ in scanned}
    assert {"events", "session_views", "subject_keys"} <= names
    everything = b"\n".join(data for _, data in scanned)
    assert str(customer).encode() in everything, "the scan must see the pseudonymous subject id"
    for value in PERSONAL:
        needles = [value.encode(), value.encode().hex().encode(), value.lower().encode()]
        for name, data in scanned:
            for needle in needles:
                assert needle not in data.lower(), f"{value!r} found in clear in {name}"
        assert value not in caplog.text, f"{value!r} found in the logs"
