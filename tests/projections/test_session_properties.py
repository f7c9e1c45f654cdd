"""Property: for any sequence of cart commands, the session fold agrees with the aggregate."""

from __future__ import annotations

import contextlib
from decimal import Decimal
from uuid import uuid4

from hypothesis import given, settings
from hypothesis import strategies as st

from aggregates.cart import Cart
from aggregates.errors import DomainError
from projections.session import SESSION
from tests.helpers import envelopes_of

SKUS = st.sampled_from(["A", "B", "C"])
PRICES = st.decimals(min_value=0, max_value=1000, places=2, allow_nan=False, allow_infinity=False)
COMMANDS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), SKUS, PRICES, st.integers(-1, 5)),
        st.tuples(st.just("change"), SKUS, st.integers(-1, 5)),
        st.tuples(st.just("remove"), SKUS),
        st.tuples(st.just("checkout")),
    ),
    max_size=25,
)


def run(cart: Cart, command: tuple[object, ...]) -> None:
    match command:
        case ("add", str(sku), Decimal() as price, int(quantity)):
            cart.add_item(sku, f"item {sku}", price, quantity)
        case ("change", str(sku), int(quantity)):
            cart.change_quantity(sku, quantity)
        case ("remove", str(sku)):
            cart.remove_item(sku)
        case ("checkout",):
            cart.checkout()


@settings(deadline=None)  # a pure fold: no timing to assert on a shared CI machine
@given(COMMANDS)
def test_the_fold_matches_the_aggregate(commands: list[tuple[object, ...]]) -> None:
    cart = Cart(subject_id=uuid4())
    for command in commands:
        with contextlib.suppress(DomainError):  # refused commands record nothing
            run(cart, command)
    envelopes = envelopes_of(cart)
    view = SESSION.fold(SESSION.empty(), envelopes).state.cart
    assert view is not None
    assert view.version == cart.version
    assert view.status == ("checked_out" if cart.checked_out else "open")
    assert {i.sku: (i.quantity, i.unit_price) for i in view.items} == {
        line.sku: (line.quantity, line.unit_price) for line in cart.lines.values()
    }
    assert view.total == cart.total
    assert view.item_count == sum(line.quantity for line in cart.lines.values())
