"""The cart part of the session view: the customer's current cart, as a device shows it."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal
from uuid import UUID

import msgspec

from aggregates import money
from aggregates.cart import Cart
from projections.envelope import Envelope

CartStatus = Literal["open", "checked_out", "merged"]
"""merged: a guest's cart whose lines went into the signed-in customer's cart."""


class CartItemView(msgspec.Struct, frozen=True, gc=False):
    sku: str
    name: str
    unit_price: Decimal
    quantity: int
    line_total: Decimal


class CartView(msgspec.Struct, frozen=True, gc=False):
    cart_id: UUID
    generation: int
    version: int
    currency: str
    status: CartStatus
    items: list[CartItemView]
    item_count: int
    total: Decimal
    updated_at: datetime
    merged_into: UUID | None = None
    """Merged: the cart (another subject's) its lines went into."""


def apply(cart: CartView | None, envelope: Envelope) -> CartView | None:
    """A newly opened cart replaces the last one; events of an older cart change nothing.
    Line totals and the total are rounded to the cart currency's minor unit."""
    event = envelope.event
    if isinstance(event, Cart.Opened):
        return _cart(envelope, event.generation, event.currency, [], "open")
    if cart is None or cart.cart_id != envelope.stream_id:
        return cart
    items = {item.sku: item for item in cart.items}
    status = cart.status
    currency = cart.currency
    merged_into = cart.merged_into
    if isinstance(event, Cart.ItemAdded):
        old = items.get(event.sku)
        quantity = event.quantity + (old.quantity if old else 0)
        items[event.sku] = _item(event.sku, event.name, event.unit_price, quantity, currency)
    elif isinstance(event, Cart.QuantityChanged):
        old = items[event.sku]
        items[event.sku] = _item(old.sku, old.name, old.unit_price, event.quantity, currency)
    elif isinstance(event, Cart.ItemRemoved):
        items.pop(event.sku, None)
    elif isinstance(event, Cart.LinesMerged):
        for line in event.lines:
            old = items.get(line.sku)
            name, price = (old.name, old.unit_price) if old else (line.name, line.unit_price)
            quantity = line.quantity + (old.quantity if old else 0)
            items[line.sku] = _item(line.sku, name, price, quantity, currency)
    elif isinstance(event, Cart.CheckedOut):
        status = "checked_out"
    elif isinstance(event, Cart.MergedInto):
        status, merged_into = "merged", event.into
    return _cart(envelope, cart.generation, currency, list(items.values()), status, merged_into)


def _item(sku: str, name: str, unit_price: Decimal, quantity: int, currency: str) -> CartItemView:
    line_total = money.times(unit_price, quantity, currency)
    return CartItemView(sku, name, unit_price, quantity, line_total)


def _cart(
    envelope: Envelope,
    generation: int,
    currency: str,
    items: list[CartItemView],
    status: CartStatus,
    merged_into: UUID | None = None,
) -> CartView:
    return CartView(
        cart_id=envelope.stream_id,
        generation=generation,
        version=envelope.version,
        currency=currency,
        status=status,
        items=items,
        item_count=sum(item.quantity for item in items),
        total=money.total([item.line_total for item in items], currency),
        updated_at=envelope.recorded_at,
        merged_into=merged_into,
    )
