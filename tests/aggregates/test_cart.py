"""The Cart aggregate on its own: commands, events and the rules it enforces."""

from __future__ import annotations

from decimal import Decimal
from uuid import uuid4

import pytest

from aggregates.cart import MAX_LINES, MAX_QUANTITY, Cart, CartMerge
from aggregates.errors import InvalidState, InvalidValue, NotFound


def new_cart() -> Cart:
    cart = Cart(subject_id=uuid4())
    cart.add_item("MUG", "Mug", Decimal("12.50"), 1)
    return cart


def test_adding_the_same_sku_adds_to_its_quantity() -> None:
    cart = new_cart()
    cart.add_item("MUG", "Mug", Decimal("12.50"), 2)
    assert cart.lines["MUG"].quantity == 3
    assert cart.total == Decimal("37.50")
    events = cart.collect_events()
    assert [type(e).__name__ for e in events] == ["Opened", "ItemAdded", "ItemAdded"]
    assert [e.originator_version for e in events] == [1, 2, 3]


def test_replaying_the_events_rebuilds_the_same_cart() -> None:
    cart = new_cart()
    cart.change_quantity("MUG", 4)
    cart.checkout()
    replayed = None
    for event in cart.collect_events():
        replayed = event.mutate(replayed)
    assert isinstance(replayed, Cart)
    assert replayed.version == cart.version == 4
    assert replayed.checked_out
    assert replayed.total == Decimal("50.00")


@pytest.mark.parametrize("quantity", [0, -1, MAX_QUANTITY + 1])
def test_impossible_quantities_are_refused(quantity: int) -> None:
    cart = new_cart()
    with pytest.raises(InvalidValue) as error:
        cart.add_item("TEA", "Tea", Decimal(1), quantity)
    assert error.value.field == "quantity"
    with pytest.raises(InvalidValue):
        cart.change_quantity("MUG", quantity)


def test_a_negative_price_is_refused() -> None:
    with pytest.raises(InvalidValue) as error:
        new_cart().add_item("TEA", "Tea", Decimal("-0.01"), 1)
    assert error.value.field == "unit_price"


def test_unknown_items_are_not_found() -> None:
    cart = new_cart()
    with pytest.raises(NotFound):
        cart.change_quantity("TEA", 1)
    with pytest.raises(NotFound):
        cart.remove_item("TEA")


def test_nothing_changes_after_checkout() -> None:
    cart = new_cart()
    cart.checkout()
    with pytest.raises(InvalidState):
        cart.add_item("TEA", "Tea", Decimal(1), 1)
    with pytest.raises(InvalidState):
        cart.change_quantity("MUG", 2)
    with pytest.raises(InvalidState):
        cart.remove_item("MUG")
    with pytest.raises(InvalidState):
        cart.checkout()


def test_an_empty_cart_cannot_be_checked_out() -> None:
    cart = new_cart()
    cart.remove_item("MUG")
    with pytest.raises(InvalidState):
        cart.checkout()


def test_a_merge_adds_what_fits_and_closes_the_other_cart() -> None:
    """Quantities add up to MAX_QUANTITY, lines past MAX_LINES stay out; the guest's cart is
    closed, and a cart in another currency is refused whole."""
    guest, mine = new_cart(), Cart(subject_id=uuid4())
    guest.add_item("MUG", "Mug", Decimal("12.50"), 1)
    guest.add_item("TEA", "Tea", Decimal("4.20"), 5)
    guest.add_item("CUP", "Cup", Decimal("3.00"), 1)
    mine.add_item("MUG", "Blue mug", Decimal("11.00"), MAX_QUANTITY - 1)
    for n in range(MAX_LINES - 2):
        mine.add_item(f"SKU-{n}", "x", Decimal("1.00"), 1)
    merged = mine.merge_lines(guest)
    assert merged == CartMerge(moved=2, capped=1, left=1)
    assert (mine.lines["MUG"].quantity, mine.lines["MUG"].name) == (MAX_QUANTITY, "Blue mug")
    assert mine.lines["TEA"].quantity == 5
    assert "CUP" not in mine.lines
    guest.merge_into(mine, mine.subject_id, merged)
    assert guest.closed
    assert guest.merged_into == mine.id
    with pytest.raises(InvalidState, match="merged"):
        guest.add_item("TEA", "Tea", Decimal("4.20"), 1)
    replayed = None
    for event in guest.collect_events():
        replayed = event.mutate(replayed)
    assert isinstance(replayed, Cart)
    assert replayed.snapshot_state() == guest.snapshot_state()
    dollars = Cart(subject_id=uuid4(), currency="USD")
    dollars.add_item("TEA", "Tea", Decimal("4.20"), 1)
    with pytest.raises(InvalidValue, match="USD"):
        Cart(subject_id=uuid4()).merge_lines(dollars)
