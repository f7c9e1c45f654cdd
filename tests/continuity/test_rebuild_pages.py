"""A rebuild folds the whole log into side tables page by page and switches them in: whatever
the page size, every subject ends with the document one fold of all their events gives."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import cast
from uuid import UUID, uuid4

import asyncpg
import pytest
from eventsourcing.domain import DomainEvent

from aggregates.cart import Cart
from aggregates.metadata import EventMeta
from continuity.erasure import shred_subject
from continuity.mapper import EventMapper
from continuity.rebuild import Rebuilder
from continuity.store import EventStore, NewEvent
from continuity.subject_views import SealedViews
from projections.session import SESSION, SessionView

pytestmark = pytest.mark.anyio

DEVICES = (EventMeta("app", "phone"), EventMeta("web", "laptop"))


async def write_interleaved(
    store: EventStore, mapper: EventMapper, subjects: int, rounds: int
) -> list[UUID]:
    """Each subject's cart written a few events at a time, the subjects taking turns, from two
    devices: every subject's events are spread over the log."""
    carts = [Cart(subject_id=uuid4()) for _ in range(subjects)]
    for round_ in range(rounds):
        rows: list[NewEvent] = []
        expected: dict[UUID, int] = {}
        for cart in carts:
            expected[cart.id] = cart.version - len(cart.pending_events)
            cart.add_item(f"SKU-{round_ % 3}", "An item", Decimal("2.50"), 1)
            if round_ % 2:
                cart.change_quantity(f"SKU-{round_ % 3}", 4)
            key = await mapper.vault.key_for_writing(cart.subject_id)
            events = cast(list[DomainEvent], cart.collect_events())
            rows += [
                EventMapper.seal_event(key, DEVICES[i % 2], event, uuid4())
                for i, event in enumerate(events)
            ]
        await store.append(rows, expected)
    return [cart.subject_id for cart in carts]


async def folded_from_log(store: EventStore, mapper: EventMapper, subject: UUID) -> SessionView:
    envelopes = await mapper.to_envelopes(await store.select_subject(subject))
    return SESSION.fold(SESSION.empty(), envelopes).state


@pytest.mark.parametrize(
    ("page_size", "held"), [(1, 1), (4, 2), (7, 3), (7, 20_000), (10_000, 20_000)]
)
async def test_a_rebuild_gives_every_subject_the_fold_of_their_whole_log(
    pool: asyncpg.Pool,
    store: EventStore,
    mapper: EventMapper,
    page_size: int,
    held: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With `held` below the number of subjects, documents are written out between pages and
    read back when their subject comes back: folded onto, never refolded from the log."""
    subjects = await write_interleaved(store, mapper, subjects=5, rounds=4)
    await shred_subject(store, mapper.vault, subjects[0])
    sessions = SealedViews(SESSION, mapper.vault, store, mapper, held=held)
    reached: list[tuple[int, int]] = []

    rebuilt = await Rebuilder(store, mapper, page_size=page_size).rebuild(
        sessions, lambda events, position: reached.append((events, position))
    )

    assert rebuilt is not None
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    last = await store.max_notification_id()
    assert rebuilt.position == last
    live = [await store.select_subject(subject) for subject in subjects[1:]]
    assert rebuilt.events == sum(map(len, live))  # the erased subject's events are passed over
    assert reached[-1] == (rebuilt.events, last)
    assert await pool.fetchval("SELECT count(*) FROM session_views") == 4
    async with pool.acquire() as conn:
        for subject in subjects[1:]:
            assert await sessions.load(conn, subject) == await folded_from_log(
                store, mapper, subject
            )
