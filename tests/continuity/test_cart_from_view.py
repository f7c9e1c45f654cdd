"""The cart service stands a cart up from the session view instead of replaying it: for every
sequence of actions, that cart is the one a replay of its events gives."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import cast
from uuid import uuid4

from eventsourcing.domain import DomainEvent
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregates.cart import Cart
from aggregates.errors import DomainError
from continuity.carts import cart_state
from projections.envelope import Envelope
from projections.session import SESSION

SKUS = st.sampled_from(["MUG-1", "TEA-7", "LID-2", "CUP-3"])
ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), SKUS, st.integers(1, 40), st.decimals("0.01", "99.99", places=3)),
        st.tuples(st.just("change"), SKUS, st.integers(1, 40), st.none()),
        st.tuples(st.just("remove"), SKUS, st.none(), st.none()),
        st.tuples(st.just("checkout"), st.none(), st.none(), st.none()),
    ),
    max_size=30,
)


def envelope(event: DomainEvent, position: int) -> Envelope:
    assert event.originator_id is not None
    return Envelope(
        position=position,
        stream_id=event.originator_id,
        version=event.originator_version,
        subject_id=uuid4(),
        topic=type(event).__qualname__,
        channel="web",
        recorded_at=datetime.now(UTC),
        key_version=1,
        event=event,
        meta=None,
    )


@settings(max_examples=200, deadline=None)
@given(actions=ACTIONS, currency=st.sampled_from(["EUR", "JPY", "KWD"]))
def test_a_cart_stood_up_from_the_view_is_the_replayed_cart(
    actions: list[tuple[str, str | None, int | None, Decimal | None]], currency: str
) -> None:
    cart = Cart(subject_id=uuid4(), currency=currency)
    for action, sku, quantity, price in actions:
        try:
            if action == "add":
                cart.add_item(
                    cast(str, sku), f"{sku} item", cast(Decimal, price), cast(int, quantity)
                )
            elif action == "change":
                cart.change_quantity(cast(str, sku), cast(int, quantity))
            elif action == "remove":
                cart.remove_item(cast(str, sku))
            else:
                cart.checkout()
        except DomainError:
            continue
    events = cast(list[DomainEvent], cart.collect_events())
    folded = SESSION.fold(SESSION.empty(), [envelope(e, n) for n, e in enumerate(events, 1)])
    shown = folded.state.cart
    assert shown is not None
    assert folded.streams[cart.id] == shown.version == cart.version
    restored = Cart.restore(shown.cart_id, shown.version, cart_state(shown, cart.subject_id))
    assert restored.snapshot_state() == cart.snapshot_state()
    assert (restored.id, restored.version, restored.total) == (cart.id, cart.version, cart.total)
