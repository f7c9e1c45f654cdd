"""The session view: what a phone or laptop loads to pick up where the customer left off.

A pure fold from envelopes to a `SessionView`; the runner in `continuity` stores it encrypted in
`session_views` in the same transaction as the append, so a second device reads its own writes.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal
from uuid import UUID

import msgspec

from aggregates.cart import Cart
from projections.envelope import Envelope, VersionGap

TABLE = "session_views"
MAX_DEVICES = 20


class CartItemView(msgspec.Struct, frozen=True):
    sku: str
    name: str
    unit_price: Decimal
    quantity: int
    line_total: Decimal


class CartView(msgspec.Struct, frozen=True):
    cart_id: UUID
    generation: int
    version: int
    status: Literal["open", "checked_out"]
    items: list[CartItemView]
    item_count: int
    total: Decimal
    updated_at: datetime


class DeviceView(msgspec.Struct, frozen=True):
    """The resume point of one device: when it was last used, where, for what."""

    device: str
    channel: str
    last_seen: datetime
    last_action: str


class SessionView(msgspec.Struct, frozen=True):
    """`streams` holds the last version folded of each stream (positions across streams are not
    commit order, so one position could not say what was folded); `position` is the highest
    position folded, for operators."""

    cart: CartView | None = None
    devices: list[DeviceView] = msgspec.field(default_factory=list)
    streams: dict[str, int] = msgspec.field(default_factory=dict)
    position: int = 0


def apply(view: SessionView, envelope: Envelope) -> SessionView:
    """Fold one event into the view: an event already folded is skipped, one that skips a
    version of its stream is a VersionGap. Erased placeholders change nothing."""
    event = envelope.event
    stream = str(envelope.stream_id)
    folded = view.streams.get(stream, 0)
    if event is None or envelope.version <= folded:
        return view
    if envelope.version != folded + 1:
        raise VersionGap(envelope.stream_id, folded, envelope.version)
    cart = _apply_cart(view.cart, envelope) if isinstance(event, Cart.Event) else view.cart
    return SessionView(
        cart=cart,
        devices=_touch_device(view.devices, envelope),
        streams={**view.streams, stream: envelope.version},
        position=max(view.position, envelope.position),
    )


def fold(view: SessionView, envelopes: list[Envelope]) -> SessionView:
    for envelope in envelopes:
        view = apply(view, envelope)
    return view


def _apply_cart(cart: CartView | None, envelope: Envelope) -> CartView | None:
    event = envelope.event
    if isinstance(event, Cart.Opened):
        return _cart(envelope, event.generation, [], "open")
    if cart is None or cart.cart_id != envelope.stream_id:
        return cart
    items = {item.sku: item for item in cart.items}
    status = cart.status
    if isinstance(event, Cart.ItemAdded):
        old = items.get(event.sku)
        quantity = event.quantity + (old.quantity if old else 0)
        items[event.sku] = _item(event.sku, event.name, event.unit_price, quantity)
    elif isinstance(event, Cart.QuantityChanged):
        old = items[event.sku]
        items[event.sku] = _item(old.sku, old.name, old.unit_price, event.quantity)
    elif isinstance(event, Cart.ItemRemoved):
        items.pop(event.sku, None)
    elif isinstance(event, Cart.CheckedOut):
        status = "checked_out"
    return _cart(envelope, cart.generation, list(items.values()), status)


def _item(sku: str, name: str, unit_price: Decimal, quantity: int) -> CartItemView:
    return CartItemView(sku, name, unit_price, quantity, unit_price * quantity)


def _cart(
    envelope: Envelope,
    generation: int,
    items: list[CartItemView],
    status: Literal["open", "checked_out"],
) -> CartView:
    return CartView(
        cart_id=envelope.stream_id,
        generation=generation,
        version=envelope.version,
        status=status,
        items=items,
        item_count=sum(item.quantity for item in items),
        total=sum((item.line_total for item in items), Decimal(0)),
        updated_at=envelope.recorded_at,
    )


def _touch_device(devices: list[DeviceView], envelope: Envelope) -> list[DeviceView]:
    meta = envelope.meta
    if meta is None or meta.device is None:
        return devices
    touched = DeviceView(
        device=meta.device,
        channel=envelope.channel,
        last_seen=envelope.recorded_at,
        last_action=envelope.topic.rsplit(":", 1)[-1],
    )
    others = [d for d in devices if d.device != meta.device]
    return [touched, *others][:MAX_DEVICES]
