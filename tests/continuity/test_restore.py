"""A log restored into another cluster: refused at start, never read out of order, repaired."""

from __future__ import annotations

from uuid import uuid4

import anyio
import asyncpg
import pytest
from click.testing import CliRunner

from continuity import log_origin
from continuity.cli import main
from continuity.runtime import Runtime
from continuity.settings import Settings
from continuity.store import EventStore
from privacy.master_key import Keyring
from tests.continuity.test_store import new_event

pytestmark = pytest.mark.anyio


async def restore_from_an_older_cluster(pool: asyncpg.Pool, after: int) -> None:
    """What `pg_dump` restored into a younger cluster looks like: rows past `after` carry
    transaction ids this cluster has not reached, and the log names another cluster."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE events DISABLE TRIGGER events_no_update_delete")
        await conn.execute(
            "UPDATE events SET tx_id = (pg_snapshot_xmax(pg_current_snapshot())::text::bigint"
            " + 1000000 + position)::text::xid8 WHERE position > $1",
            after,
        )
        await conn.execute("ALTER TABLE events ENABLE TRIGGER events_no_update_delete")
        await conn.execute(
            "INSERT INTO log_origin (system_identifier) VALUES (42) ON CONFLICT (only_row)"
            " DO UPDATE SET system_identifier = 42"
        )


async def cli(
    database_url: str, schema: str, *args: str, keyring: Keyring | None = None
) -> tuple[int, str]:
    """The command as an operator runs it (in a thread: it runs its own event loop)."""
    env = {"CONTINUITY_DATABASE_URL": database_url, "CONTINUITY_DATABASE_SCHEMA": schema}
    if keyring is not None:
        env["CONTINUITY_MASTER_KEY"] = ",".join(keyring.to_text().split())
    result = await anyio.to_thread.run_sync(lambda: CliRunner().invoke(main, list(args), env=env))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


async def test_a_restored_log_is_refused_then_repaired_and_read_in_order(
    store: EventStore, database_url: str, schema: str, keyring: Keyring
) -> None:
    settings = Settings(database_schema=schema)
    await (await Runtime.open(settings, database_url, keyring)).close()  # it has served before
    streams = [uuid4() for _ in range(3)]
    written = [(await store.append([new_event(s, 1)], {s: 0}))[0] for s in streams]
    await restore_from_an_older_cluster(store.pool, after=written[0])
    [newer] = await store.append([new_event(uuid4(), 1)])

    page = await store.select_notifications(None, 100)
    assert [e.position for e in page] == written[:1], "a reader went past restored events"

    with pytest.raises(log_origin.LogFromAnotherCluster, match="continuity log repair") as no:
        await Runtime.open(settings, database_url, keyring)
    assert no.value.rows == 2

    code, output = await cli(database_url, schema, "log", "check")
    assert code == 1
    assert "2 events" in output
    code, output = await cli(database_url, schema, "log", "repair")
    assert code == 0, output
    assert "2 events repaired" in output
    code, output = await cli(database_url, schema, "log", "check")
    assert code == 0, output

    page = await store.select_notifications(None, 100)
    assert [e.position for e in page] == [*written, newer]
    runtime = await Runtime.open(settings, database_url, keyring)
    await runtime.close()
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await store.pool.execute("UPDATE events SET channel = 'app'")


async def test_the_cluster_that_wrote_the_log_is_recorded_once_and_then_trusted(
    store: EventStore, schema: str
) -> None:
    stream = uuid4()
    await store.append([new_event(stream, 1)], {stream: 0})
    async with store.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM log_origin") == 0
        await log_origin.check(conn)
        here = await conn.fetchval("SELECT system_identifier FROM pg_control_system()")
        assert await conn.fetchval("SELECT system_identifier FROM log_origin") == here
        await log_origin.check(conn)
