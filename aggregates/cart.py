"""The shopping cart: items with quantities, removal, and checkout."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from aggregates.errors import InvalidState, InvalidValue, NotFound

MAX_QUANTITY = 10_000
CART_NAMESPACE = UUID("6f0f5a6e-2f44-4d0e-9a52-7d1c3e0c8a11")


class CartLine:
    """One line of the cart (state, not an event)."""

    __slots__ = ("name", "quantity", "sku", "unit_price")

    def __init__(self, sku: str, name: str, unit_price: Decimal, quantity: int) -> None:
        self.sku = sku
        self.name = name
        self.unit_price = unit_price
        self.quantity = quantity

    @property
    def total(self) -> Decimal:
        return self.unit_price * self.quantity


def _check_quantity(quantity: int) -> None:
    if quantity <= 0:
        raise InvalidValue("quantity must be at least 1", field="quantity")
    if quantity > MAX_QUANTITY:
        raise InvalidValue(f"quantity must be at most {MAX_QUANTITY}", field="quantity")


class Cart(Aggregate):
    """A customer's cart. Adding a SKU already in the cart adds to its quantity.

    A customer has one open cart at a time; the n-th has a deterministic id, so two devices
    opening "the" cart at once collide on the same stream instead of opening two carts."""

    class Opened(Aggregate.Created):
        subject_id: UUID
        generation: int

    class ItemAdded(Aggregate.Event):
        sku: str
        name: str
        unit_price: Decimal
        quantity: int

    class QuantityChanged(Aggregate.Event):
        sku: str
        quantity: int

    class ItemRemoved(Aggregate.Event):
        sku: str

    class CheckedOut(Aggregate.Event):
        total: Decimal

    @staticmethod
    def create_id(subject_id: UUID, generation: int = 1) -> UUID:
        return uuid5(CART_NAMESPACE, f"{subject_id}/{generation}")

    @event(Opened)
    def __init__(self, subject_id: UUID, generation: int = 1) -> None:
        self.subject_id = subject_id
        self.generation = generation
        self.lines: dict[str, CartLine] = {}
        self.checked_out = False

    def add_item(self, sku: str, name: str, unit_price: Decimal, quantity: int) -> None:
        self._check_open()
        _check_quantity(quantity)
        if not unit_price.is_finite() or unit_price < 0:
            raise InvalidValue("unit_price must be zero or more", field="unit_price")
        existing = self.lines.get(sku)
        if existing is not None:
            _check_quantity(existing.quantity + quantity)
        self._item_added(sku, name, unit_price, quantity)

    @event(ItemAdded)
    def _item_added(self, sku: str, name: str, unit_price: Decimal, quantity: int) -> None:
        line = self.lines.get(sku)
        if line is None:
            self.lines[sku] = CartLine(sku, name, unit_price, quantity)
        else:
            line.name = name
            line.unit_price = unit_price
            line.quantity += quantity

    def change_quantity(self, sku: str, quantity: int) -> None:
        self._check_open()
        self._line(sku)
        _check_quantity(quantity)
        self._quantity_changed(sku, quantity)

    @event(QuantityChanged)
    def _quantity_changed(self, sku: str, quantity: int) -> None:
        self.lines[sku].quantity = quantity

    def remove_item(self, sku: str) -> None:
        self._check_open()
        self._line(sku)
        self._item_removed(sku)

    @event(ItemRemoved)
    def _item_removed(self, sku: str) -> None:
        del self.lines[sku]

    def checkout(self) -> None:
        self._check_open()
        if not self.lines:
            raise InvalidState("an empty cart cannot be checked out")
        self._checked_out(self.total)

    @event(CheckedOut)
    def _checked_out(self, total: Decimal) -> None:
        self.checked_out = True

    @property
    def total(self) -> Decimal:
        return sum((line.total for line in self.lines.values()), Decimal(0))

    def _line(self, sku: str) -> CartLine:
        line = self.lines.get(sku)
        if line is None:
            raise NotFound(f"item {sku!r} is not in the cart", field="sku")
        return line

    def _check_open(self) -> None:
        if self.checked_out:
            raise InvalidState("the cart has been checked out and can no longer change")
