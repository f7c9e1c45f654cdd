"""Bodies of the activity and preferences routes, shown in the OpenAPI schema."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated
from uuid import UUID

import msgspec

from aggregates.activity import (
    MAX_ITEMS,
    MAX_QUERY,
    MAX_RESULTS,
    MAX_SCREEN,
    MAX_STEP,
    Item,
    OnScreen,
    Searched,
    Viewed,
)
from api.patterns import END
from api.schemas import Amount, CurrencyCode, Device, Name, RecentlyViewed, Search, Sku
from projections.session import SessionView

_PRINTABLE = r"^[^\x00-\x1f\x7f]+" + END
Query = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_QUERY,
        pattern=_PRINTABLE,
        description="What the customer typed; no control characters.",
        examples=["blue mug"],
    ),
]
Screen = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_SCREEN,
        pattern=_PRINTABLE,
        description="The app's name for the screen (`product`, `checkout`, `application`).",
        examples=["checkout"],
    ),
]
Step = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_STEP,
        pattern=_PRINTABLE,
        description="The application's step the screen shows.",
        examples=["identity"],
    ),
]


class ProductViewedItem(
    msgspec.Struct, forbid_unknown_fields=True, kw_only=True, tag_field="type", tag="viewed"
):
    """A product the device showed; a price, if given, with its currency."""

    sku: Sku
    name: Name
    price: Amount | None = None
    currency: CurrencyCode | None = None

    def item(self) -> Viewed:
        price = None if self.price is None else Decimal(self.price)
        return Viewed(sku=self.sku, name=self.name, price=price, currency=self.currency)


class SearchedItem(
    msgspec.Struct, forbid_unknown_fields=True, kw_only=True, tag_field="type", tag="searched"
):
    """A search the customer ran, and how many results it found, if the app says."""

    query: Query
    results: Annotated[int, msgspec.Meta(ge=0, le=MAX_RESULTS)] | None = None

    def item(self) -> Searched:
        return Searched(query=self.query, results=self.results)


class ScreenItem(
    msgspec.Struct, forbid_unknown_fields=True, kw_only=True, tag_field="type", tag="screen"
):
    """The screen the device is on now: its resume point. With an application's id and step,
    or a cart's id, another device can offer to continue right there."""

    screen: Screen
    application_id: UUID | None = None
    step: Step | None = None
    cart_id: UUID | None = None

    def item(self) -> OnScreen:
        return OnScreen(
            screen=self.screen,
            application_id=self.application_id,
            step=self.step,
            cart_id=self.cart_id,
        )


ActivityItem = ProductViewedItem | SearchedItem | ScreenItem


class ActivityBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What a device saw since its last request, oldest first (`type` says which kind each
    item is): recorded in order, as one request."""

    items: Annotated[list[ActivityItem], msgspec.Meta(min_length=1, max_length=MAX_ITEMS)]

    def domain_items(self) -> list[Item]:
        return [item.item() for item in self.items]


class Preferences(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The customer's preferences: `personalization` false refuses it (activity is then not
    recorded, and what was shown of it is cleared); true (the default) allows it."""

    personalization: bool


class ActivitySummary(msgspec.Struct):
    """What the customer's activity shows: recently viewed products (newest first, a sku
    once), recent searches, and each device with the screen it was last on (`resume_point`)."""

    personalization: bool
    recently_viewed: list[RecentlyViewed]
    recent_searches: list[Search]
    devices: list[Device]

    @classmethod
    def of(cls, view: SessionView) -> ActivitySummary:
        activity = view.activity
        return cls(
            activity.personalization,
            [RecentlyViewed.of(p) for p in activity.recently_viewed],
            [Search.of(s) for s in activity.recent_searches],
            [Device.of(d) for d in view.devices],
        )
