"""The unit of work: several aggregates, of several subjects, saved in one atomic append."""

from __future__ import annotations

from decimal import Decimal
from uuid import uuid4

import pytest

from aggregates.cart import Cart
from aggregates.metadata import EventMeta
from continuity.erasure import shred_subject
from continuity.errors import ConcurrencyConflict, EventIdReused, SubjectErased
from continuity.mapper import EventMapper
from continuity.repository import IdempotencyKey, Repository, UnitOfWork
from continuity.store import EventStore

pytestmark = pytest.mark.anyio

APP = EventMeta("app", "phone")
AGENT = EventMeta("agent", None, "agent", "agent-7")


def a_cart(sku: str) -> Cart:
    cart = Cart(subject_id=uuid4())
    cart.add_item(sku, "An item", Decimal("1.50"), 1)
    return cart


async def test_aggregates_of_two_subjects_are_saved_in_one_append(
    store: EventStore, mapper: EventMapper
) -> None:
    repository = Repository(store, mapper)
    guest, customer = a_cart("MUG-1"), a_cart("TEA-7")
    work = UnitOfWork().add(guest, guest.subject_id, APP).add(customer, customer.subject_id, AGENT)
    key = IdempotencyKey(customer.subject_id, uuid4())
    positions = (await repository.commit(work, key, b"merge")).positions
    assert positions == list(range(positions[0], positions[0] + 4))

    loaded = await repository.load_many([guest.id, customer.id, uuid4()], Cart)
    assert set(loaded) == {guest.id, customer.id}
    assert list(loaded[guest.id].lines) == ["MUG-1"]
    assert list(loaded[customer.id].lines) == ["TEA-7"]
    records = await store.select_streams([guest.id, customer.id])
    assert {(r.stream_id, r.subject_id, r.channel) for r in records} == {
        (guest.id, guest.subject_id, "app"),
        (customer.id, customer.subject_id, "agent"),
    }

    rebuilt = [Cart(subject_id=cart.subject_id) for cart in (guest, customer)]
    rebuilt[0].add_item("MUG-1", "An item", Decimal("1.50"), 1)
    rebuilt[1].add_item("TEA-7", "An item", Decimal("1.50"), 1)
    retried = UnitOfWork().add(rebuilt[0], guest.subject_id, APP)
    retried.add(rebuilt[1], customer.subject_id, AGENT)
    assert (await repository.commit(retried, key, b"merge")).positions == positions
    assert len(await store.select_streams([guest.id, customer.id])) == 4


async def test_one_stale_stream_writes_nothing_for_any(
    store: EventStore, mapper: EventMapper
) -> None:
    repository = Repository(store, mapper)
    first, second = a_cart("MUG-1"), a_cart("TEA-7")
    await repository.save(second, second.subject_id, APP, IdempotencyKey(uuid4(), uuid4()), b"1")
    stale = await repository.load(second.id, Cart)
    assert stale is not None
    newer = await repository.load(second.id, Cart)
    assert newer is not None
    newer.add_item("CUP-2", "A cup", Decimal("3"), 1)
    await repository.save(newer, second.subject_id, APP, IdempotencyKey(uuid4(), uuid4()), b"2")
    stale.add_item("LID-3", "A lid", Decimal("1"), 1)
    work = UnitOfWork().add(first, first.subject_id, APP).add(stale, second.subject_id, APP)
    with pytest.raises(ConcurrencyConflict) as conflict:
        await repository.commit(work, IdempotencyKey(uuid4(), uuid4()), b"3")
    assert (conflict.value.stream_id, conflict.value.expected, conflict.value.actual) == (
        second.id,
        2,
        3,
    )
    assert await store.select_events(first.id) == []


async def test_an_erased_subject_in_the_unit_writes_nothing_for_the_others(
    store: EventStore, mapper: EventMapper
) -> None:
    repository = Repository(store, mapper)
    kept, gone = a_cart("MUG-1"), a_cart("TEA-7")
    await mapper.vault.key_for_writing(gone.subject_id)
    await shred_subject(store, mapper.vault, gone.subject_id)
    work = UnitOfWork().add(kept, kept.subject_id, APP).add(gone, gone.subject_id, APP)
    with pytest.raises(SubjectErased):
        await repository.commit(work, IdempotencyKey(kept.subject_id, uuid4()), b"x")
    assert await store.select_streams([kept.id, gone.id]) == []


def test_an_aggregate_is_added_once() -> None:
    cart = a_cart("MUG-1")
    work = UnitOfWork().add(cart, cart.subject_id, APP)
    with pytest.raises(ValueError, match="already in this unit"):
        work.add(cart, cart.subject_id, APP)


async def test_claimed_events_append_in_claim_order_with_each_requests_own_ids(
    store: EventStore, mapper: EventMapper
) -> None:
    """A batch of requests on two aggregates: interleaved in the log as claimed, and each
    request's events carry the ids and digests that request saved alone would carry."""
    repository = Repository(store, mapper)
    subject = uuid4()
    cart, other = Cart(subject_id=subject), Cart(subject_id=subject, generation=2)
    work = UnitOfWork().add(cart, subject, APP).add(other, subject, APP)
    keys = [IdempotencyKey(subject, uuid4()) for _ in range(3)]
    cart.add_item("MUG-1", "A mug", Decimal("1.50"), 1)
    assert work.claim(cart, keys[0], b"first") == 2  # the opening and the add
    other.add_item("TEA-7", "Tea", Decimal("2.00"), 1)
    assert work.claim(other, keys[1], b"second", EventMeta("app", "tablet")) == 2
    cart.change_quantity("MUG-1", 3)
    assert work.claim(cart, keys[2], b"third") == 1
    saved = await repository.commit(work, None, b"")
    assert saved.event_ids == [*keys[0].event_ids(2), *keys[1].event_ids(2), keys[2].first]
    records = {r.event_id: r for r in await store.select_streams([cart.id, other.id])}
    order = [records[event_id].stream_id for event_id in saved.event_ids]
    assert order == [cart.id, cart.id, other.id, other.id, cart.id]
    assert saved.positions == sorted(saved.positions)
    alone = Cart.restore(cart.id, 3, cart.snapshot_state())
    alone.change_quantity("MUG-1", 3)
    with pytest.raises(EventIdReused):  # the same key alone: recognised by its digest
        await repository.save(alone, subject, APP, keys[2], b"other content")
    replay = Cart.restore(cart.id, 3, cart.snapshot_state())
    replay.change_quantity("MUG-1", 3)
    again = await repository.save(replay, subject, APP, keys[2], b"third")
    assert again.positions == [saved.positions[-1]]
