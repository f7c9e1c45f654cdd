"""Guests and devices: a guest's cart continued on a second device through a handoff code, the
code's limits, the device list, and revocation refused at once in another server process."""

from __future__ import annotations

import asyncio
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import pytest
from litestar import Litestar

from continuity.runtime import Runtime
from privacy.master_key import Keyring
from tests.conftest import AppFactory, client_of
from tests.helpers import MUG, SECRET
from tests.server import server_process

pytestmark = pytest.mark.anyio


def bearer(session: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {session['token']}"}


async def guest(client: httpx.AsyncClient, name: str = "Pixel 8") -> dict[str, Any]:
    answer = await client.post("/v1/sessions", json={"device_name": name, "channel": "app"})
    assert answer.status_code == 201, answer.text
    session: dict[str, Any] = answer.json()
    assert session["guest"] is True
    return session


async def code_of(client: httpx.AsyncClient, session: dict[str, Any]) -> str:
    answer = await client.post("/v1/me/handoff", headers=bearer(session))
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["link"].endswith(body["code"])
    code: str = body["code"]
    return code


async def redeem(client: httpx.AsyncClient, code: str, name: str = "Laptop") -> httpx.Response:
    return await client.post(
        "/v1/sessions/redeem", json={"code": code, "device_name": name, "channel": "web"}
    )


async def test_a_guests_cart_continues_on_a_second_device_through_a_handoff_code(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    phone = await guest(client)
    added = await client.post("/v1/me/cart/items", json=MUG, headers=bearer(phone))
    assert added.status_code == 200, added.text

    code = await code_of(client, phone)
    assert len(code) == 11
    assert code[5] == "-"
    answer = await redeem(client, code.lower().replace("-", " "))  # as typed, loosely
    assert answer.status_code == 201, answer.text
    laptop = answer.json()
    assert laptop["subject_id"] == phone["subject_id"]
    assert laptop["device_id"] != phone["device_id"]
    assert laptop["guest"] is True

    cart = (await client.get("/v1/me/cart", headers=bearer(laptop))).json()
    assert [(i["sku"], i["quantity"]) for i in cart["items"]] == [("MUG-1", 1)]
    session = (await client.get("/v1/me/session", headers=bearer(laptop))).json()
    assert [(d["device"], d["name"], d["channel"]) for d in session["devices"]] == [
        (phone["device_id"], "Pixel 8", "app")  # "continue where you left off on your Pixel 8"
    ]  # the phone's add said no X-Channel: it happened on the channel the phone registered
    more = {**MUG, "sku": "MUG-2", "name": "Red mug"}
    assert (await client.post("/v1/me/cart/items", json=more, headers=bearer(laptop))).is_success
    cart = (await client.get("/v1/me/cart", headers=bearer(phone))).json()
    assert [i["sku"] for i in cart["items"]] == ["MUG-1", "MUG-2"]

    devices = (await client.get("/v1/me/devices", headers=bearer(laptop))).json()
    assert {(d["name"], d["channel"], d["current"]) for d in devices} == {
        ("Pixel 8", "app", False),
        ("Laptop", "web", True),
    }
    assert all(d["first_seen"] <= d["last_seen"] for d in devices)

    dump = await _dump(runtime.pool)
    for secret in ("Pixel 8", "Laptop", code, code.replace("-", "")):
        assert secret not in dump


async def test_a_code_is_single_use_and_expires(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    phone = await guest(client)
    code = await code_of(client, phone)
    assert (await redeem(client, code)).status_code == 201
    reused = await redeem(client, code)
    assert reused.status_code == 409
    assert reused.json()["type"].endswith("/handoff-code-used")
    assert reused.json()["field"] == "code"

    late = await code_of(client, phone)
    await runtime.pool.execute("UPDATE handoff_codes SET expires_at = now() - interval '1 s'")
    expired = await redeem(client, late)
    assert expired.status_code == 410
    assert expired.json()["type"].endswith("/handoff-code-expired")


async def test_wrong_codes_burn_the_code_they_name_and_then_stop_the_client(
    started: AppFactory,
) -> None:
    async with (
        started(redeem_failures=7, rate_limit_per_minute=0) as app,
        client_of(app) as client,
        client_of(app, peer="10.0.0.9") as other,
    ):
        phone = await guest(client)
        code = await code_of(client, phone)
        near = code[:6] + ("0" if code[6] != "0" else "1") + code[7:]  # its half, wrong rest
        for _ in range(5):
            wrong = await redeem(client, near)
            assert wrong.status_code == 422, wrong.text
            assert wrong.json()["type"].endswith("/handoff-code-wrong")
        burnt = await redeem(client, code)
        assert burnt.status_code == 410  # five wrong secrets burn it, even for its owner

        fresh = await code_of(client, phone)
        assert (await redeem(client, "ZZZZZ-ZZZZZ")).status_code == 422
        assert (await redeem(client, "not a code")).status_code == 422
        stopped = await redeem(client, fresh)  # seven failures: this client must wait
        assert stopped.status_code == 429
        assert stopped.json()["type"].endswith("/too-many-wrong-codes")
        assert 0 < int(stopped.headers["Retry-After"]) <= 15 * 60
        assert (await redeem(other, fresh)).status_code == 201  # another client is not


async def test_revoking_a_device_refuses_its_token_at_once_in_another_process(
    client: httpx.AsyncClient,
    database_url: str,
    schema: str,
    keyring: Keyring,
    tmp_path: Path,
) -> None:
    phone = await guest(client)
    laptop = (await redeem(client, await code_of(client, phone))).json()
    env = {
        "CONTINUITY_DATABASE_URL": database_url,
        "CONTINUITY_DATABASE_SCHEMA": schema,
        "CONTINUITY_MASTER_KEY": keyring.current.to_text(),
        "CONTINUITY_JWT_SECRET": SECRET,
        "CONTINUITY_DATA_DIR": str(tmp_path / "data"),
        "CONTINUITY_LOG_LEVEL": "WARNING",
        "CONTINUITY_POOL_MIN_SIZE": "1",
    }
    with ExitStack() as stack:  # started in a thread: this loop serves the first process
        other, _ = await asyncio.to_thread(
            stack.enter_context, server_process(env, tmp_path / "other.log")
        )
        async with httpx.AsyncClient(base_url=other) as second:
            for _ in range(3):  # the other process has the device's owner cached now
                assert (await second.get("/v1/me/session", headers=bearer(laptop))).is_success
            revoked = await client.delete(
                f"/v1/me/devices/{laptop['device_id']}", headers=bearer(phone)
            )
            assert revoked.status_code == 204, revoked.text
            refused = await second.get("/v1/me/session", headers=bearer(laptop))
            assert refused.status_code == 401, refused.text
            assert "revoked" in refused.json()["detail"]
            assert (await client.get("/v1/me/cart", headers=bearer(laptop))).status_code == 401
            assert (await second.get("/v1/me/session", headers=bearer(phone))).is_success
    devices = (await client.get("/v1/me/devices", headers=bearer(phone))).json()
    assert [d["device_id"] for d in devices] == [phone["device_id"]]


async def test_a_device_of_another_customer_cannot_be_revoked(client: httpx.AsyncClient) -> None:
    mine, theirs = await guest(client), await guest(client, "Their phone")
    answer = await client.delete(f"/v1/me/devices/{theirs['device_id']}", headers=bearer(mine))
    assert answer.status_code == 404
    assert (await client.get("/v1/me/session", headers=bearer(theirs))).is_success


async def test_a_process_that_cannot_hear_broadcasts_trusts_no_cached_device(
    app: Litestar, runtime: Runtime
) -> None:
    async with client_of(app) as client:
        phone = await guest(client)
        laptop = (await redeem(client, await code_of(client, phone))).json()
        assert (await client.get("/v1/me/session", headers=bearer(laptop))).is_success
        await runtime.pool.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            f"continuity-process {runtime.process.process_id}",
        )
        await runtime.pool.execute(  # revoked behind the process's back, no broadcast
            "UPDATE devices SET revoked_at = now() WHERE device_id = $1",
            UUID(laptop["device_id"]),
        )
        for _ in range(200):
            if not runtime.process.listening:
                break
            await asyncio.sleep(0.01)
        assert (await client.get("/v1/me/session", headers=bearer(laptop))).status_code == 401


async def _dump(pool: asyncpg.Pool) -> str:
    """Every text and byte column of every table in the schema, as one string."""
    parts: list[str] = []
    tables = await pool.fetch("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
    for table in tables:
        for row in await pool.fetch(f'SELECT * FROM "{table["tablename"]}"'):
            for value in row.values():
                if isinstance(value, bytes):
                    parts.append(value.decode("latin-1"))
                elif value is not None:
                    parts.append(str(value))
    return "\n".join(parts)
