"""The async projection runner: checkpointed, one at a time, and a kill leaves nothing lost or
doubled."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import cast
from uuid import uuid4

import asyncpg
import pytest
from eventsourcing.domain import DomainEvent

from aggregates.cart import Cart
from aggregates.metadata import EventMeta
from continuity.erasure import shred_subject
from continuity.mapper import EventMapper
from continuity.runner import ProjectionRunner
from continuity.store import EventStore
from privacy.master_key import Keyring
from tests.continuity.counting import counting, create_table

pytestmark = pytest.mark.anyio

APP = EventMeta("app", "phone")


async def write_carts(store: EventStore, mapper: EventMapper, carts: int, items: int) -> list[Cart]:
    written = []
    for _ in range(carts):
        cart = Cart(subject_id=uuid4())
        for i in range(items):
            cart.add_item(f"SKU-{i}", "An item", Decimal("1.00"), 1)
        key = await mapper.vault.key_for_writing(cart.subject_id)
        events = cast(list[DomainEvent], cart.collect_events())
        rows = [EventMapper.seal_event(key, APP, e, uuid4()) for e in events]
        await store.append(rows, {cart.id: 0})
        written.append(cart)
    return written


async def counted(pool: asyncpg.Pool) -> dict[object, int]:
    return {r[0]: r[1] for r in await pool.fetch("SELECT stream_id, events FROM stream_counts")}


async def rebuilt(store: EventStore) -> dict[object, int]:
    """What the projection holds if built from the whole log at once."""
    counts: dict[object, int] = {}
    for event in await store.select_notifications(None, 1_000_000):
        counts[event.stream_id] = counts.get(event.stream_id, 0) + 1
    return counts


async def until(condition: Callable[[], Awaitable[bool]], seconds: float = 20) -> None:
    """Poll `condition` (the runner works in the background) until it holds."""
    for _ in range(int(seconds / 0.02)):
        if await condition():
            return
        await asyncio.sleep(0.02)
    raise TimeoutError(f"not within {seconds} s")


def at(runner: ProjectionRunner, position: int | None) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return runner.position == position

    return check


def leased(*runners: ProjectionRunner) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return any(r.leased.is_set() for r in runners)

    return check


async def test_a_runner_catches_up_follows_and_skips_erased_subjects(
    store: EventStore, mapper: EventMapper, pool: asyncpg.Pool
) -> None:
    await create_table(pool)
    carts = await write_carts(store, mapper, 5, 9)
    await shred_subject(store, mapper.vault, carts[0].subject_id)
    runner = ProjectionRunner(store, mapper, counting(), page_size=7, poll_interval=5)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        last = await store.max_notification_id() or 0
        await until(at(runner, last))
        expected = await rebuilt(store)
        del expected[carts[0].id]
        assert await counted(pool) == expected
        more = await write_carts(store, mapper, 1, 3)  # woken by NOTIFY, not the 5 s poll
        await until(at(runner, await store.max_notification_id()), seconds=4)
        assert (await counted(pool))[more[0].id] == 4
        assert await store.max_tracking_id("stream_counts") == runner.position
    finally:
        stop.set()
        await task


async def test_two_runners_never_both_apply_and_one_takes_over_from_the_other(
    store: EventStore, mapper: EventMapper, pool: asyncpg.Pool
) -> None:
    await create_table(pool)
    await write_carts(store, mapper, 6, 10)
    first, second = (
        ProjectionRunner(store, mapper, counting(), page_size=5, poll_interval=0.05)
        for _ in range(2)
    )
    stop_first, stop_second = asyncio.Event(), asyncio.Event()
    tasks = [
        asyncio.create_task(first.run(stop_first)),
        asyncio.create_task(second.run(stop_second)),
    ]
    try:
        await until(leased(first, second))
        if first.leased.is_set():
            leader, follower, stop_leader = first, second, stop_first
        else:
            leader, follower, stop_leader = second, first, stop_second
        await until(at(leader, await store.max_notification_id()))
        assert not follower.leased.is_set()
        stop_leader.set()
        await until(leased(follower))
        await write_carts(store, mapper, 2, 4)
        await until(at(follower, await store.max_notification_id()))
        assert await counted(pool) == await rebuilt(store)
    finally:
        stop_first.set()
        stop_second.set()
        await asyncio.gather(*tasks)


async def test_a_runner_killed_mid_batch_resumes_to_what_a_rebuild_gives(
    store: EventStore,
    mapper: EventMapper,
    pool: asyncpg.Pool,
    database_url: str,
    schema: str,
    keyring: Keyring,
) -> None:
    await create_table(pool)
    await write_carts(store, mapper, 20, 19)  # 400 events, 20 pages of 20
    command = [sys.executable, "-m", "tests.continuity.counting", database_url, schema]
    child = await asyncio.create_subprocess_exec(
        *command, keyring.to_text(), env={**os.environ, "PYTHONPATH": os.getcwd()}
    )
    try:
        await until(tracked_beyond(store, 100))
        child.send_signal(signal.SIGKILL)
    finally:
        await asyncio.wait_for(child.wait(), 10)
    killed_at = await store.max_tracking_id("stream_counts")
    assert killed_at is not None
    assert killed_at < (await store.max_notification_id() or 0), "the child finished unkilled"

    runner = ProjectionRunner(store, mapper, counting(), page_size=50, poll_interval=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        await until(at(runner, await store.max_notification_id()))
    finally:
        stop.set()
        await task
    assert await counted(pool) == await rebuilt(store)


def tracked_beyond(store: EventStore, position: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await store.max_tracking_id("stream_counts") or 0) > position

    return check
