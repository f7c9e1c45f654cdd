"""The shopping cart: items with quantities, removal, and checkout."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Self
from uuid import UUID, uuid5

import msgspec
from eventsourcing.domain import Aggregate, event

from aggregates import money
from aggregates.errors import DomainError, InvalidState, InvalidValue, NotFound
from aggregates.restoring import restored

MAX_QUANTITY = 10_000
MAX_LINES = 100
"""Different SKUs in one cart."""
CART_NAMESPACE = UUID("6f0f5a6e-2f44-4d0e-9a52-7d1c3e0c8a11")


class CartLine:
    """One line of the cart (state, not an event)."""

    __slots__ = ("currency", "name", "quantity", "sku", "unit_price")

    def __init__(
        self, sku: str, name: str, unit_price: Decimal, quantity: int, currency: str
    ) -> None:
        self.sku = sku
        self.name = name
        self.unit_price = unit_price
        self.quantity = quantity
        self.currency = currency

    @property
    def total(self) -> Decimal:
        return money.times(self.unit_price, self.quantity, self.currency)


class LineState(msgspec.Struct, frozen=True, gc=False):
    sku: str
    name: str
    unit_price: Decimal
    quantity: int


class CartState(msgspec.Struct, frozen=True, gc=False):
    """A cart's state at a version: what a snapshot holds, and what the session view's cart
    part carries too (so the cart service can stand a cart up from either)."""

    subject_id: UUID
    generation: int
    currency: str
    lines: list[LineState]
    checked_out: bool
    merged_into: UUID | None = None


class CartMerge(msgspec.Struct, frozen=True, gc=False):
    """What a merge of one cart into another did: lines moved (some `capped` at MAX_QUANTITY),
    and lines `left` out (past MAX_LINES)."""

    moved: int
    capped: int
    left: int

    def plus(self, other: CartMerge) -> CartMerge:
        return CartMerge(
            self.moved + other.moved, self.capped + other.capped, self.left + other.left
        )


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
        """Version 2: a cart has a currency (ISO 4217), every price in it is in that currency.
        Carts opened before were in the deployment's configured default currency."""

        class_version = 2
        subject_id: UUID
        generation: int
        currency: str

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["currency"] = money.legacy_currency()

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

    class LinesMerged(Aggregate.Event):
        """Another subject's cart's lines (a guest's, at sign-in) added here, as many of each
        as fitted: a sku already here adds its quantity and keeps this cart's name and price."""

        from_cart: UUID
        lines: list[LineState]

    class MergedInto(Aggregate.Event):
        """Closed: its lines went into cart `into` of subject `into_subject`; `moved` lines
        went, `capped` of them at MAX_QUANTITY, and `left` did not fit (MAX_LINES)."""

        into: UUID
        into_subject: UUID
        moved: int
        capped: int
        left: int

    @classmethod
    def snapshot_type(cls) -> type[CartState]:
        return CartState

    def snapshot_state(self) -> CartState:
        return CartState(
            subject_id=self.subject_id,
            generation=self.generation,
            currency=self.currency,
            lines=[
                LineState(line.sku, line.name, line.unit_price, line.quantity)
                for line in self.lines.values()
            ],
            checked_out=self.checked_out,
            merged_into=self.merged_into,
        )

    @classmethod
    def restore(cls, stream_id: UUID, version: int, state: CartState) -> Self:
        """The cart at `version` from its state then, as if its events had been replayed."""
        return restored(
            cls,
            stream_id,
            version,
            subject_id=state.subject_id,
            generation=state.generation,
            currency=state.currency,
            lines={
                line.sku: CartLine(
                    line.sku, line.name, line.unit_price, line.quantity, state.currency
                )
                for line in state.lines
            },
            checked_out=state.checked_out,
            merged_into=state.merged_into,
        )

    @staticmethod
    def create_id(subject_id: UUID, generation: int = 1) -> UUID:
        return uuid5(CART_NAMESPACE, f"{subject_id}/{generation}")

    @event(Opened)
    def __init__(
        self, subject_id: UUID, generation: int = 1, currency: str = money.DEFAULT_CURRENCY
    ) -> None:
        self.subject_id = subject_id
        self.generation = generation
        self.currency = currency
        self.lines: dict[str, CartLine] = {}
        self.checked_out = False
        self.merged_into: UUID | None = None

    def add_item(
        self,
        sku: str,
        name: str,
        unit_price: Decimal,
        quantity: int,
        currency: str | None = None,
    ) -> None:
        """Add `quantity` of `sku` at `unit_price`, in the cart's currency (`currency`, if
        given, must be it); the price is kept at the currency's minor unit ("12.5" is 12.50)."""
        self._check_open()
        _check_quantity(quantity)
        if currency is not None and currency != self.currency:
            money.check_currency(currency)
            raise InvalidValue(
                f"the cart is in {self.currency}; its prices cannot be in {currency}",
                field="currency",
            )
        unit_price = money.check_amount(unit_price, self.currency, "unit_price")
        existing = self.lines.get(sku)
        if existing is not None:
            _check_quantity(existing.quantity + quantity)
        elif len(self.lines) >= MAX_LINES:
            raise DomainError(f"a cart holds at most {MAX_LINES} different items", field="sku")
        self._item_added(sku, name, unit_price, quantity)

    @event(ItemAdded)
    def _item_added(self, sku: str, name: str, unit_price: Decimal, quantity: int) -> None:
        line = self.lines.get(sku)
        if line is None:
            self.lines[sku] = CartLine(sku, name, unit_price, quantity, self.currency)
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

    def merge_lines(self, source: Cart) -> CartMerge:
        """Add `source`'s lines (another subject's cart, in this cart's currency) here, capping
        each quantity at MAX_QUANTITY and leaving the lines past MAX_LINES: a sign-in never
        fails over what fits in a cart. What went where is in the answer."""
        self._check_open()
        if source.currency != self.currency:
            raise InvalidValue(
                f"the cart is in {self.currency}; its prices cannot be in {source.currency}",
                field="currency",
            )
        added: list[LineState] = []
        capped = left = 0
        count = len(self.lines)
        for line in source.lines.values():
            existing = self.lines.get(line.sku)
            if existing is None and count >= MAX_LINES:
                left += 1
                continue
            count += existing is None
            quantity = min(line.quantity, MAX_QUANTITY - (existing.quantity if existing else 0))
            capped += quantity < line.quantity
            if quantity > 0:
                added.append(LineState(line.sku, line.name, line.unit_price, quantity))
        if added:
            self._lines_merged(source.id, added)
        return CartMerge(moved=len(source.lines) - left, capped=capped, left=left)

    @event(LinesMerged)
    def _lines_merged(self, from_cart: UUID, lines: list[LineState]) -> None:
        for line in lines:
            existing = self.lines.get(line.sku)
            if existing is None:
                self.lines[line.sku] = CartLine(
                    line.sku, line.name, line.unit_price, line.quantity, self.currency
                )
            else:
                existing.quantity += line.quantity

    def merge_into(self, into: Cart, into_subject: UUID, merge: CartMerge) -> None:
        """Close this cart: its lines went into `into` (see `merge_lines`)."""
        self._check_open()
        self._merged_into(into.id, into_subject, merge.moved, merge.capped, merge.left)

    @event(MergedInto)
    def _merged_into(
        self, into: UUID, into_subject: UUID, moved: int, capped: int, left: int
    ) -> None:
        self.merged_into = into

    @property
    def closed(self) -> bool:
        """Checked out, or merged into another subject's cart: a new one opens for more."""
        return self.checked_out or self.merged_into is not None

    @property
    def total(self) -> Decimal:
        return money.total([line.total for line in self.lines.values()], self.currency)

    def _line(self, sku: str) -> CartLine:
        line = self.lines.get(sku)
        if line is None:
            raise NotFound(f"item {sku!r} is not in the cart", field="sku")
        return line

    def _check_open(self) -> None:
        if self.checked_out:
            raise InvalidState("the cart has been checked out and can no longer change")
        if self.merged_into is not None:
            raise InvalidState("the cart was merged into the signed-in customer's cart")
