"""Rebuilding a projection: side tables, then an atomic switch-over, with the old rows served and
writes going on until then; erased subjects hold no rows; a stale fold version is rebuilt at
start."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from uuid import UUID, uuid4

import pytest

from aggregates.metadata import EventMeta
from continuity import carts
from continuity.erasure import shred_subject
from continuity.mapper import EventMapper
from continuity.rebuild import Rebuilder
from continuity.runner import ProjectionRunner
from continuity.runtime import Runtime
from continuity.settings import Settings
from continuity.store import EventStore
from privacy.master_key import Keyring
from projections.session import SESSION, SessionView
from tests.continuity.counting import counting, create_table
from tests.continuity.test_restore import cli
from tests.continuity.test_runner import counted, rebuilt, until, write_carts

pytestmark = pytest.mark.anyio

PHONE = EventMeta("app", "phone")


async def add(runtime: Runtime, subject: UUID, sku: str, quantity: int = 1) -> None:
    command = carts.add_item(sku, f"item {sku}", Decimal("2.00"), quantity)
    await runtime.carts.execute(subject, PHONE, command, idempotency_key=uuid4(), opens_cart=True)


async def from_the_log(runtime: Runtime, subject: UUID) -> SessionView:
    """The subject's view folded afresh from the log: what every row must equal."""
    records = await runtime.store.select_subject(subject)
    return SESSION.fold(SESSION.empty(), await runtime.mapper.to_envelopes(records)).state


async def side_tables(runtime: Runtime) -> list[str]:
    rows = await runtime.pool.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        " AND tablename LIKE '%\\_\\_next'"
    )
    return [row[0] for row in rows]


async def test_a_rebuild_switches_over_while_customers_write_and_read(runtime: Runtime) -> None:
    subjects = [uuid4() for _ in range(6)]
    for subject in subjects:
        for i in range(4):
            await add(runtime, subject, f"SKU-{i}")
    rebuilder = Rebuilder(runtime.store, runtime.mapper, page_size=3)
    rebuilding = asyncio.create_task(rebuilder.rebuild(runtime.sessions))
    seen: dict[UUID, int] = dict.fromkeys(subjects, 4)
    while not rebuilding.done():
        for subject in subjects:
            await add(runtime, subject, "MORE")
            view = await runtime.carts.session(subject)
            assert view.cart is not None, "a reader found no view during the rebuild"
            assert view.cart.item_count == seen[subject] + 1, "a write was lost or not read"
            seen[subject] += 1
    report = await rebuilding
    assert report is not None
    assert report.events >= 6 * 5
    assert min(seen.values()) > 4, "no write went on during the rebuild"
    for subject in subjects:
        assert await runtime.carts.session(subject) == await from_the_log(runtime, subject)
        await add(runtime, subject, "AFTER")
        assert await runtime.carts.session(subject) == await from_the_log(runtime, subject)


async def test_what_commits_just_before_the_switch_is_in_the_switched_in_rows(
    runtime: Runtime,
) -> None:
    """Events committed after the side tables caught up, before the switch holds off writers:
    the switch folds them (every committed event is in the live rows, so must be in the new)."""
    subjects = [uuid4() for _ in range(3)]
    for subject in subjects:
        await add(runtime, subject, "MUG")

    async def customers_write() -> None:
        for subject in subjects:
            await add(runtime, subject, "TEA", 2)

    await runtime.rebuilder.rebuild(runtime.sessions, before_switch=customers_write)
    for subject in subjects:
        view = await runtime.carts.session(subject)
        assert view == await from_the_log(runtime, subject)
        assert view.cart is not None
        assert view.cart.item_count == 3
    assert await side_tables(runtime) == []
    index = await runtime.pool.fetchval(
        "SELECT indexname FROM pg_indexes WHERE tablename = 'session_views'"
        " AND schemaname = current_schema()"
    )
    assert index == "session_views_pkey", "the switched-in table's index keeps its name"


async def test_erased_subjects_hold_no_rows_after_a_rebuild(runtime: Runtime) -> None:
    kept, erased_before, erased_during = uuid4(), uuid4(), uuid4()
    for subject in (kept, erased_before, erased_during):
        for i in range(5):
            await add(runtime, subject, f"SKU-{i}")
    await shred_subject(runtime.store, runtime.vault, erased_before)
    erasing: list[asyncio.Task[object]] = []

    def erase_once_under_way(events: int, position: int) -> None:
        if not erasing:  # the side table holds erased_during's row by now, or will
            erasing.append(
                asyncio.create_task(shred_subject(runtime.store, runtime.vault, erased_during))
            )

    rebuilder = Rebuilder(runtime.store, runtime.mapper, page_size=2)
    await rebuilder.rebuild(runtime.sessions, erase_once_under_way)
    await asyncio.gather(*erasing)
    rows = await runtime.pool.fetch("SELECT subject_id FROM session_views")
    assert {row[0] for row in rows} == {kept}


async def test_a_view_built_by_another_fold_version_is_rebuilt_at_start(
    runtime: Runtime, database_url: str, schema: str, keyring: Keyring
) -> None:
    subject = uuid4()
    await add(runtime, subject, "MUG")
    await runtime.pool.execute(
        "UPDATE projections SET version = 1, built_at = NULL WHERE name = 'session'"
    )
    assert await runtime.rebuilder.stale(runtime.sessions)
    await runtime.pool.execute("UPDATE session_views SET body = 'left by version 1'")

    again = await Runtime.open(Settings(database_schema=schema), database_url, keyring)
    try:
        entry = await again.pool.fetchrow(
            "SELECT version, built_at, built_to FROM projections WHERE name = 'session'"
        )
        assert entry is not None
        assert entry["version"] == SESSION.version
        assert entry["built_at"] is not None
        assert entry["built_to"] == await again.store.max_notification_id()
        view = await again.carts.session(subject)
        assert view.cart is not None
        assert [i.sku for i in view.cart.items] == ["MUG"]
    finally:
        await again.close()


async def test_an_async_projection_is_rebuilt_under_its_running_runner(
    store: EventStore, mapper: EventMapper
) -> None:
    """The runner keeps applying pages throughout; the switch moves its checkpoint to where
    the rebuild got, and no event is applied twice or missed."""
    await create_table(store.pool)
    await write_carts(store, mapper, carts=6, items=5)
    runner = ProjectionRunner(store, mapper, counting(pause=0.01), page_size=4, poll_interval=0.05)
    stop = asyncio.Event()
    running = asyncio.create_task(runner.run(stop))
    try:
        await until(lambda: asyncio.sleep(0, runner.position > 0))
        rebuilding = asyncio.create_task(Rebuilder(store, mapper, page_size=3).rebuild(counting()))
        while not rebuilding.done():
            await write_carts(store, mapper, carts=1, items=2)
        await rebuilding
        await write_carts(store, mapper, carts=2, items=3)
        head = await store.max_notification_id()
        await until(lambda: asyncio.sleep(0, runner.position == head))
        assert await counted(store.pool) == await rebuilt(store)
    finally:
        stop.set()
        await running


async def test_the_projections_commands(
    runtime: Runtime, database_url: str, schema: str, keyring: Keyring
) -> None:
    subject = uuid4()
    for sku in ("MUG", "TEA"):
        await add(runtime, subject, sku)
    head = await runtime.store.max_notification_id()

    code, output = await cli(database_url, schema, "projections", "list", keyring=keyring)
    assert code == 0, output
    assert (
        f"session\tinline\tversion {SESSION.version}\ttopics: all\ttables: session_views" in output
    )

    code, output = await cli(database_url, schema, "projections", "status", keyring=keyring)
    assert code == 0, output
    assert (
        f"session: current; inline, version {SESSION.version}; at position {head} of {head}"
        in output
    )
    assert "0 events behind; rows: session_views 1" in output

    code, output = await cli(
        database_url, schema, "projections", "rebuild", "session", keyring=keyring
    )
    assert code == 0, output
    assert f"session: 3 events folded up to position {head}" in output
    assert "switched over" in output
    view = await runtime.carts.session(subject)
    assert view == await from_the_log(runtime, subject)

    code, output = await cli(
        database_url, schema, "projections", "rebuild", "nope", keyring=keyring
    )
    assert code == 2
    known = "analytics, application_queue, conversation_queue, session, timeline"
    assert f"no projection named 'nope' (known: {known})" in output
