"""Snapshots: a load reads the newest snapshot and the events after it; the state is the one a
full replay gives, erasure makes it unreadable, and a change of the code it depends on makes
it be passed over and taken again."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, cast
from uuid import UUID, uuid4

import msgspec
import pytest
from eventsourcing.domain import Aggregate, event

from aggregates.cart import Cart
from aggregates.metadata import EventMeta
from continuity import snapshots
from continuity.erasure import shred_subject
from continuity.errors import SubjectErased
from continuity.mapper import EventMapper
from continuity.repository import IdempotencyKey, Repository
from continuity.store import EventStore

pytestmark = pytest.mark.anyio

META = EventMeta("app", "phone")


async def busy_cart(repository: Repository, events: int, steps: int) -> Cart:
    """A cart of `events` events (a few lines, then their quantities changed over and over),
    committed `steps` events at a time, as a customer's actions would be."""
    cart = Cart(subject_id=uuid4())
    for sku in ("MUG-1", "TEA-7", "LID-2"):
        cart.add_item(sku, f"Item {sku}", Decimal("3.10"), 1)
    while cart.version < events:
        cart.change_quantity(("MUG-1", "TEA-7")[cart.version % 2], cart.version % 9 + 1)
        if len(cart.pending_events) >= steps or cart.version == events:
            await save(repository, cart)
    return cart


async def save(repository: Repository, cart: Cart) -> None:
    request = IdempotencyKey(cart.subject_id, uuid4())
    await repository.save(cart, cart.subject_id, META, request, b"step")


async def replayed(store: EventStore, mapper: EventMapper, cart_id: UUID) -> Cart:
    cart: Any = None
    for envelope in await mapper.to_envelopes(await store.select_events(cart_id)):
        cart = cast(Aggregate.Event, envelope.event).mutate(cart)
    assert isinstance(cart, Cart)
    return cart


async def stored(store: EventStore, stream_id: UUID) -> Any:
    return await store.pool.fetchrow(
        "SELECT version, fingerprint FROM snapshots WHERE stream_id = $1", stream_id
    )


async def test_a_load_from_a_snapshot_gives_what_a_full_replay_gives(
    store: EventStore, mapper: EventMapper
) -> None:
    repository = Repository(store, mapper)
    cart = await busy_cart(repository, 250, 7)
    row = await stored(store, cart.id)
    assert row["version"] // snapshots.EVERY == 2, "taken as commits passed 100 and 200"
    assert row["version"] < 250

    loaded = await repository.load(cart.id, Cart)
    full = await replayed(store, mapper, cart.id)
    assert loaded is not None
    assert loaded.version == full.version == 250
    assert loaded.snapshot_state() == full.snapshot_state() == cart.snapshot_state()
    tail = await store.select_streams([cart.id], {cart.id: row["version"]})
    assert [e.version for e in tail] == list(range(row["version"] + 1, 251))

    loaded.add_item("CUP-3", "A cup", Decimal("1.00"), 2)  # and it goes on from there
    await save(repository, loaded)
    assert (await replayed(store, mapper, cart.id)).snapshot_state() == loaded.snapshot_state()


async def test_a_long_replay_leaves_a_snapshot_behind(
    store: EventStore, mapper: EventMapper
) -> None:
    """A stream written in one append (a bulk load, an import) gets its snapshot at once, and
    one whose snapshot was lost gets it back at the next load."""
    repository = Repository(store, mapper)
    cart = await busy_cart(repository, 150, 150)
    assert (await stored(store, cart.id))["version"] == 150
    await store.pool.execute("DELETE FROM snapshots")
    assert await repository.load(cart.id, Cart) is not None
    assert (await stored(store, cart.id))["version"] == 150


async def test_a_snapshot_is_unreadable_after_erasure(
    store: EventStore, mapper: EventMapper
) -> None:
    repository = Repository(store, mapper)
    cart = await busy_cart(repository, 120, 120)
    row = await store.pool.fetchrow("SELECT * FROM snapshots WHERE stream_id = $1", cart.id)
    assert row is not None
    await shred_subject(store, mapper.vault, cart.subject_id)
    with pytest.raises(SubjectErased):
        await repository.load(cart.id, Cart)
    keys = await mapper.vault.keys_for_reading([(cart.subject_id, row["key_version"])])
    assert not keys, "no key left that opens it"
    assert b"Item MUG-1" not in row["state"]


class Counter(Aggregate):
    """An aggregate of the test's own, to change the code a snapshot depends on."""

    class State(msgspec.Struct, frozen=True):
        count: int

    class Counted(Aggregate.Event):
        by: int

    @event("Created")
    def __init__(self) -> None:
        self.count = 0

    @event(Counted)
    def count_up(self, by: int) -> None:
        self.count += by

    @classmethod
    def snapshot_type(cls) -> type[msgspec.Struct]:
        return cls.State

    def snapshot_state(self) -> msgspec.Struct:
        return self.State(self.count)

    @classmethod
    def restore(cls, stream_id: UUID, version: int, state: Any) -> Counter:
        counter = object.__new__(cls)
        counter.__dict__.update(_id=stream_id, _version=version, _pending_events=[])
        counter.count = state.count
        return counter


def test_the_fingerprint_follows_event_versions_and_the_state_layout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = snapshots.fingerprint(Counter)
    snapshots.fingerprint.cache_clear()
    monkeypatch.setattr(Counter.Counted, "class_version", 2, raising=False)
    bumped = snapshots.fingerprint(Counter)
    monkeypatch.undo()
    snapshots.fingerprint.cache_clear()
    assert snapshots.fingerprint(Counter) == before

    class Wider(msgspec.Struct, frozen=True):
        count: int
        label: str = ""

    monkeypatch.setattr(Counter, "snapshot_type", classmethod(lambda cls: Wider))
    snapshots.fingerprint.cache_clear()
    widened = snapshots.fingerprint(Counter)
    monkeypatch.undo()
    snapshots.fingerprint.cache_clear()
    assert len({before, bumped, widened}) == 3


async def test_a_snapshot_of_other_code_is_passed_over_and_taken_again(
    store: EventStore, mapper: EventMapper
) -> None:
    """When an event class gains a version (or the state changes), old snapshots no longer
    match: the load replays the stream, whatever the old snapshot holds, and replaces it."""
    repository = Repository(store, mapper)
    cart = await busy_cart(repository, 130, 10)
    await store.pool.execute(
        "UPDATE snapshots SET fingerprint = 'older-code', state = '\\x00'::bytea"
    )
    loaded = await repository.load(cart.id, Cart)
    assert loaded is not None
    assert loaded.snapshot_state() == cart.snapshot_state()
    row = await stored(store, cart.id)
    assert (row["version"], row["fingerprint"]) == (130, snapshots.fingerprint(Cart))
