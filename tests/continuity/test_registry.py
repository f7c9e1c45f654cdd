"""Adding a projection as docs/architecture.md shows: built from the log when first seen, folded
inline from then on, its rows cleared by erasure through the catalog."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from uuid import UUID, uuid4

import msgspec
import pytest

from aggregates.cart import Cart
from aggregates.metadata import EventMeta
from continuity.db import Conn
from continuity.erasure import shred_subject
from continuity.mapper import EventMapper
from continuity.projection import Mode, Placement
from continuity.rebuild import Rebuilder
from continuity.registry import Registry
from continuity.repository import IdempotencyKey, Repository
from continuity.store import EventStore
from continuity.subject_views import SealedViews
from projections.envelope import Envelope
from projections.tables import Table
from projections.view import SubjectView

pytestmark = pytest.mark.anyio


class Activity(msgspec.Struct, frozen=True):
    actions: int = 0
    last_channel: str | None = None


def apply(state: Activity, envelope: Envelope) -> Activity:
    return Activity(state.actions + 1, envelope.channel)


ACTIVITY = SubjectView("activity", "activity_views", Activity, apply)


async def shop(
    repository: Repository, subject: UUID, channel: str, items: int, generation: int = 1
) -> None:
    cart = Cart(subject_id=subject, generation=generation)
    for i in range(items):
        cart.add_item(f"SKU-{i}", "An item", Decimal("1.00"), 1)
    key = IdempotencyKey(subject, uuid4())
    await repository.save(cart, subject, EventMeta(channel, "phone"), key, b"shop")  # type: ignore[arg-type]


async def test_a_new_projection_is_built_from_the_log_then_folded_inline(
    store: EventStore, mapper: EventMapper
) -> None:
    before, erased = uuid4(), uuid4()
    await shop(Repository(store, mapper), before, "web", items=2)  # before the projection exists
    await shop(Repository(store, mapper), erased, "web", items=1)

    activity = SealedViews(ACTIVITY, mapper.vault, store, mapper)
    registry = Registry([activity])
    rebuilder = Rebuilder(store, mapper)
    assert await rebuilder.stale(activity)
    built = await rebuilder.rebuild(activity, if_stale=True)
    assert built is not None
    assert built.events == 5
    assert await rebuilder.rebuild(activity, if_stale=True) is None, "built once"
    assert await activity.load(store.pool, before) == Activity(3, "web")

    repository = Repository(store, mapper, registry)
    await shop(repository, before, "app", items=1, generation=2)
    assert await activity.load(store.pool, before) == Activity(3 + 2, "app")

    certificate = await shred_subject(store, mapper.vault, erased)
    assert certificate.projection_rows_deleted == 1
    rows = await store.pool.fetch("SELECT subject_id FROM activity_views")
    assert [row[0] for row in rows] == [before]


def test_two_projections_cannot_share_a_name_or_a_table() -> None:
    with pytest.raises(ValueError, match="named 'activity'"):
        Registry([_Named("activity", "a"), _Named("activity", "b")])
    with pytest.raises(ValueError, match="activity_views is owned by activity"):
        Registry([_Named("activity", "activity_views"), _Named("other", "activity_views")])
    with pytest.raises(ValueError, match="not a plain lower-case table name"):
        Registry([_Named("odd", "Odd Table")])


@dataclass(frozen=True)
class _Named:
    """Just enough of a projection for the registry's checks."""

    name: str
    table: str
    topics: tuple[str, ...] = ()
    mode: Mode = "inline"
    version: int = 1

    @property
    def tables(self) -> tuple[Table, ...]:
        return SubjectView(self.name, self.table, Activity, apply).tables

    async def handle(self, conn: Conn, placement: Placement, envelopes: list[Envelope]) -> None:
        raise AssertionError("never applied here")
