"""Request and response bodies (msgspec Structs), shown in the OpenAPI schema."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated
from uuid import UUID

import msgspec

from projections.session import CartView, DeviceView

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


class SessionResponse(msgspec.Struct):
    """Everything a device needs to resume: the cart (with the version for If-Match) and where
    each of the customer's devices left off."""

    subject_id: UUID
    cart: CartView | None
    devices: list[DeviceView]


class Health(msgspec.Struct):
    status: str
    database: str


class Readiness(msgspec.Struct):
    status: str
    pending_migrations: list[str]
