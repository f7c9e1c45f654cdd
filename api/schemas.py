"""Request and response bodies (msgspec Structs), shown in the OpenAPI schema."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal
from uuid import UUID

import msgspec

from projections.cart import CartView
from projections.session import DeviceView, SessionView

Sku = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$",
        description="The product's stock-keeping unit.",
        examples=["SKU-123"],
    ),
]
Quantity = Annotated[int, msgspec.Meta(description="How many; at least 1.", examples=[2])]


class AddItem(msgspec.Struct, forbid_unknown_fields=True):
    sku: Sku
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200, examples=["Blue mug"])]
    unit_price: Annotated[
        Decimal, msgspec.Meta(description='A decimal string, e.g. "12.50".', examples=["12.50"])
    ]
    quantity: Quantity = 1


class ChangeQuantity(msgspec.Struct, forbid_unknown_fields=True):
    quantity: Quantity


class CartItem(msgspec.Struct):
    sku: str
    name: str
    unit_price: Decimal
    quantity: int
    line_total: Decimal


class Cart(msgspec.Struct):
    """The customer's current cart; `version` is what If-Match sends back (also in ETag)."""

    cart_id: UUID
    version: int
    status: Literal["open", "checked_out"]
    items: list[CartItem]
    item_count: int
    total: Decimal
    updated_at: datetime

    @classmethod
    def of(cls, view: CartView) -> Cart:
        items = [
            CartItem(i.sku, i.name, i.unit_price, i.quantity, i.line_total) for i in view.items
        ]
        return cls(
            view.cart_id,
            view.version,
            view.status,
            items,
            view.item_count,
            view.total,
            view.updated_at,
        )


class Device(msgspec.Struct):
    """Where one of the customer's devices left off."""

    device: str
    channel: str
    last_seen: datetime
    last_action: str

    @classmethod
    def of(cls, view: DeviceView) -> Device:
        return cls(view.device, view.channel, view.last_seen, view.last_action)


class SessionResponse(msgspec.Struct):
    """Everything a device needs to resume: the cart (with the version for If-Match) and where
    each of the customer's devices left off."""

    subject_id: UUID
    cart: Cart | None
    devices: list[Device]

    @classmethod
    def of(cls, subject_id: UUID, view: SessionView) -> SessionResponse:
        cart = Cart.of(view.cart) if view.cart is not None else None
        return cls(subject_id, cart, [Device.of(d) for d in view.devices])


class Health(msgspec.Struct):
    status: str
    database: str


class Readiness(msgspec.Struct):
    status: str
    pending_migrations: list[str]
