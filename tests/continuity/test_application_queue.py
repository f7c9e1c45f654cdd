"""The agents' queue of applications, an async projection: a runner stopped in the middle of a
page resumes to exactly what a rebuild gives; filters and keyset pages over it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from uuid import UUID, uuid4

import asyncpg
import pytest

from aggregates.application import Application
from aggregates.metadata import EventMeta
from continuity.application_queue import QUEUE, ApplicationQueue, QueueFilter, page
from continuity.db import Conn
from continuity.form_catalog import load_forms
from continuity.mapper import EventMapper
from continuity.projection import Placement
from continuity.rebuild import Rebuilder
from continuity.repository import IdempotencyKey, Repository
from continuity.runner import ProjectionRunner
from continuity.store import EventStore
from projections.envelope import Envelope
from tests.aggregates.test_application import EMPLOYED, IDENTITY
from tests.helpers import run_to_head

pytestmark = pytest.mark.anyio

TODAY = date(2026, 11, 23)


@dataclass
class Halting:
    """The queue, except that its second page waits inside its transaction until cancelled:
    a runner killed in the middle of a page."""

    inner: ApplicationQueue = field(default_factory=ApplicationQueue)
    pages: int = 0
    inside: asyncio.Event = field(default_factory=asyncio.Event)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def handle(self, conn: Conn, placement: Placement, envelopes: list[Envelope]) -> None:
        await self.inner.handle(conn, placement, envelopes)
        self.pages += 1
        if self.pages == 2:
            self.inside.set()
            await asyncio.Event().wait()


async def applications(store: EventStore, mapper: EventMapper, count: int) -> list[Application]:
    """`count` loan applications in several states, on two channels."""
    form = load_forms().latest("personal-loan")
    assert form is not None
    repository = Repository(store, mapper)
    made = []
    for n in range(count):
        app = Application(subject_id=uuid4(), form=form, start_key=uuid4())
        if n % 3 >= 1:
            app.complete_step("identity", IDENTITY, TODAY)
        if n % 3 == 2:
            app.save_draft("employment", EMPLOYED)
        if n % 4 == 3:
            app.withdraw()
        meta = EventMeta("app" if n % 2 else "web", "phone")
        await repository.save(
            app, app.subject_id, meta, IdempotencyKey(app.subject_id, uuid4()), b"x"
        )
        made.append(app)
    return made


async def rows(pool: asyncpg.Pool) -> list[tuple[object, ...]]:
    return [tuple(r) for r in await pool.fetch(f"SELECT * FROM {QUEUE} ORDER BY application_id")]


async def test_a_runner_killed_mid_page_resumes_to_what_a_rebuild_gives(
    store: EventStore, mapper: EventMapper, pool: asyncpg.Pool
) -> None:
    rebuilder = Rebuilder(store, mapper)
    await rebuilder.rebuild(ApplicationQueue())  # the empty table, and the catalog's row
    made = await applications(store, mapper, 12)

    halting = Halting()
    killed = asyncio.create_task(
        ProjectionRunner(store, mapper, halting, page_size=5, poll_interval=0.05).run(  # type: ignore[arg-type]
            asyncio.Event()
        )
    )
    await asyncio.wait_for(halting.inside.wait(), 20)
    killed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await killed
    partial = await rows(pool)
    assert 0 < len(partial) < len(made), "the first page only: the second rolled back"

    more = await applications(store, mapper, 3)
    runner = ProjectionRunner(store, mapper, ApplicationQueue(), page_size=5, poll_interval=0.05)
    await run_to_head(runner)
    caught_up = await rows(pool)
    assert len(caught_up) == len(made) + len(more)

    await rebuilder.rebuild(ApplicationQueue())
    assert await rows(pool) == caught_up


async def test_the_queue_filters_and_pages_by_last_activity(
    store: EventStore, mapper: EventMapper, pool: asyncpg.Pool
) -> None:
    await Rebuilder(store, mapper).rebuild(ApplicationQueue())
    made = await applications(store, mapper, 12)
    runner = ProjectionRunner(store, mapper, ApplicationQueue(), page_size=50)
    await run_to_head(runner)
    everything = await page(pool, QueueFilter(), limit=100)
    assert len(everything.rows) == 12
    assert everything.next_cursor is None
    times = [r.last_activity for r in everything.rows]
    assert times == sorted(times, reverse=True)

    withdrawn = await page(pool, QueueFilter(status="withdrawn"))
    assert {r.application_id for r in withdrawn.rows} == {
        a.id for a in made if a.status == "withdrawn"
    }
    at_employment = await page(pool, QueueFilter(status="in_progress", current_step="employment"))
    assert {r.application_id for r in at_employment.rows} == {
        a.id for a in made if a.status == "in_progress" and a.current == "employment"
    }
    on_web = await page(pool, QueueFilter(channel="web"))
    assert len(on_web.rows) == 6
    idle = await page(pool, QueueFilter(idle_since=datetime.now(UTC) - timedelta(hours=1)))
    assert idle.rows == []

    seen: list[UUID] = []
    cursor = None
    while True:
        found = await page(pool, QueueFilter(), limit=5, order="oldest", cursor=cursor)
        seen += [r.application_id for r in found.rows]
        cursor = found.next_cursor
        if cursor is None:
            break
    assert seen == [r.application_id for r in reversed(everything.rows)]
    assert len(set(seen)) == 12
