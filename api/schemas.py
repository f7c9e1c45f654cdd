"""Request and response bodies (msgspec Structs), shown in the OpenAPI schema."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Annotated
from uuid import UUID

import msgspec

from aggregates.money import MAX_INTEGER_DIGITS
from api.application_schemas import ApplicationSummary
from api.conversation_schemas import ConversationSummary
from api.limits import MAX_NAME, MAX_QUANTITY, MAX_SKU
from api.patterns import END
from projections.activity import RecentSearch, ResumePoint, ViewedProduct
from projections.cart import CartStatus, CartView
from projections.session import DeviceView, SessionView

SKU_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]*" + END
Sku = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_SKU,
        pattern=SKU_PATTERN,
        description="The product's stock-keeping unit: ASCII letters and digits, then also"
        " . _ : / -",
        examples=["SKU-123"],
    ),
]
Name = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_NAME,
        pattern=r"^[^\x00-\x1f\x7f]+" + END,
        description="The product's name as the customer sees it; no control characters.",
        examples=["Blue mug"],
    ),
]
Amount = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_INTEGER_DIGITS + 4,
        pattern=rf"^(0|[1-9][0-9]{{0,{MAX_INTEGER_DIGITS - 1}}})(\.[0-9]{{1,3}})?" + END,
        description=(
            f"A decimal string in the cart's currency, at most {MAX_INTEGER_DIGITS} digits"
            " before the point and no finer than the currency's minor unit (2 decimals for"
            ' EUR and USD, 0 for JPY, 3 for KWD): "12.50". No sign, exponent, spaces or'
            " underscores."
        ),
        examples=["12.50"],
    ),
]
CurrencyCode = Annotated[
    str,
    msgspec.Meta(
        pattern="^[A-Z]{3}" + END,
        description="An ISO 4217 currency code; a new cart's currency (default: the server's,"
        " CONTINUITY_CURRENCY), and an existing cart's must match.",
        examples=["EUR"],
    ),
]
Quantity = Annotated[
    int,
    msgspec.Meta(
        ge=1,
        le=MAX_QUANTITY,
        description="How many: a JSON integer written without a fraction or exponent (2, not"
        " 2.0 or 2e0).",
        examples=[2],
    ),
]


class AddItem(msgspec.Struct, forbid_unknown_fields=True):
    sku: Sku
    name: Name
    unit_price: Amount
    quantity: Quantity = 1
    currency: CurrencyCode | msgspec.UnsetType = msgspec.UNSET


class ChangeQuantity(msgspec.Struct, forbid_unknown_fields=True):
    quantity: Quantity


class CartItem(msgspec.Struct):
    sku: str
    name: str
    unit_price: Decimal
    quantity: int
    line_total: Decimal


class Cart(msgspec.Struct):
    """The customer's current cart; `version` is what If-Match sends back (also in ETag).
    Prices and totals are decimal strings in `currency`, totals rounded to its minor unit."""

    cart_id: UUID
    version: int
    currency: str
    status: CartStatus
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
            view.currency,
            view.status,
            items,
            view.item_count,
            view.total,
            view.updated_at,
        )


class Resume(msgspec.Struct):
    """The screen a device was last on (`at`), and what on: an application at a step, or a
    cart, where the app said so."""

    screen: str
    application_id: UUID | None
    step: str | None
    cart_id: UUID | None
    at: datetime

    @classmethod
    def of(cls, view: ResumePoint) -> Resume:
        return cls(view.screen, view.application_id, view.step, view.cart_id, view.at)


_NO_NAMES: Mapping[str, str] = {}


class Device(msgspec.Struct):
    """Where one of the customer's devices left off: its last action, and the screen it was
    last on (`resume_point`, null until it reports one through `POST /v1/me/activity`)."""

    device: str
    channel: str
    last_seen: datetime
    last_action: str
    resume_point: Resume | None
    name: str | None = None
    """What the customer calls a registered device ("continue where you left off on your
    Pixel 8"), in the session view; null for a token that names no registered device, and in
    the answer to `POST /v1/me/activity` (which does not look names up)."""

    @classmethod
    def of(cls, view: DeviceView, names: Mapping[str, str] = _NO_NAMES) -> Device:
        resume = Resume.of(view.resume_point) if view.resume_point is not None else None
        name = names.get(view.device)
        return cls(view.device, view.channel, view.last_seen, view.last_action, resume, name)


class RecentlyViewed(msgspec.Struct):
    """A product viewed (on `device`, at `viewed_at`), with its price if the app gave one."""

    sku: str
    name: str
    price: Decimal | None
    currency: str | None
    viewed_at: datetime
    device: str | None

    @classmethod
    def of(cls, view: ViewedProduct) -> RecentlyViewed:
        return cls(view.sku, view.name, view.price, view.currency, view.viewed_at, view.device)


class Search(msgspec.Struct):
    query: str
    results: int | None
    searched_at: datetime

    @classmethod
    def of(cls, view: RecentSearch) -> Search:
        return cls(view.query, view.results, view.searched_at)


class SessionResponse(msgspec.Struct):
    """Everything a device needs to resume: the cart (with the version for If-Match), the
    applications in progress (at their current step, with every saved answer), where each
    of the customer's devices left off (with the screen each was last on), the conversations
    (each open one, then the most recently active, with their last turns), and the activity:
    whether personalization is allowed, the products recently viewed (newest first, a sku
    once) and the recent searches."""

    subject_id: UUID
    cart: Cart | None
    devices: list[Device]
    applications: list[ApplicationSummary]
    conversations: list[ConversationSummary]
    personalization: bool
    recently_viewed: list[RecentlyViewed]
    recent_searches: list[Search]

    @classmethod
    def of(cls, subject_id: UUID, view: SessionView, names: Mapping[str, str]) -> SessionResponse:
        """`names`: the registered devices' names, by the id their events record."""
        cart = Cart.of(view.cart) if view.cart is not None else None
        open_ones = [
            ApplicationSummary.of(a) for a in view.applications if a.status == "in_progress"
        ]
        return cls(
            subject_id,
            cart,
            [Device.of(d, names) for d in view.devices],
            open_ones,
            [ConversationSummary.of(c) for c in view.conversations],
            view.activity.personalization,
            [RecentlyViewed.of(p) for p in view.activity.recently_viewed],
            [Search.of(s) for s in view.activity.recent_searches],
        )


class Health(msgspec.Struct):
    status: str
    database: str


class Readiness(msgspec.Struct):
    status: str
    pending_migrations: list[str]
