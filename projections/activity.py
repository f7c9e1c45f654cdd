"""The activity part of the session view: recently viewed products, recent searches, whether
the customer allows personalization, and the resume point a device's screen events leave.

Bounded: the last `MAX_RECENTLY_VIEWED` products (a sku once, where it was last seen) and
`MAX_RECENT_SEARCHES` searches; the log keeps everything. A refusal of personalization empties
them (and the devices' resume points: `projections.session`).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from uuid import UUID

import msgspec

from aggregates.activity import Activity
from projections.envelope import Envelope

MAX_RECENTLY_VIEWED = 20
MAX_RECENT_SEARCHES = 5


class ViewedProduct(msgspec.Struct, frozen=True, gc=False):
    sku: str
    name: str
    price: Decimal | None
    currency: str | None
    viewed_at: datetime
    device: str | None


class RecentSearch(msgspec.Struct, frozen=True, gc=False):
    query: str
    results: int | None
    searched_at: datetime


class ResumePoint(msgspec.Struct, frozen=True, gc=False):
    """The screen a device was last on, and what on: an application's step or a cart."""

    screen: str
    application_id: UUID | None
    step: str | None
    cart_id: UUID | None
    at: datetime


class ActivityView(msgspec.Struct, frozen=True, gc=False):
    personalization: bool = True
    recently_viewed: list[ViewedProduct] = msgspec.field(default_factory=list)
    recent_searches: list[RecentSearch] = msgspec.field(default_factory=list)


def apply(view: ActivityView, envelope: Envelope) -> ActivityView:
    event = envelope.event
    if isinstance(event, Activity.ProductViewed):
        device = envelope.meta.device if envelope.meta is not None else None
        seen = ViewedProduct(
            event.sku, event.name, event.price, event.currency, envelope.recorded_at, device
        )
        others = [p for p in view.recently_viewed if p.sku != event.sku]
        recently_viewed = [seen, *others][:MAX_RECENTLY_VIEWED]
        return msgspec.structs.replace(view, recently_viewed=recently_viewed)
    if isinstance(event, Activity.Searched):
        search = RecentSearch(event.query, event.results, envelope.recorded_at)
        others_ = [s for s in view.recent_searches if s.query != event.query]
        recent_searches = [search, *others_][:MAX_RECENT_SEARCHES]
        return msgspec.structs.replace(view, recent_searches=recent_searches)
    if isinstance(event, Activity.PersonalizationSet):
        if event.allowed:
            return msgspec.structs.replace(view, personalization=True)
        return ActivityView(personalization=False)
    return view


def resume_point(envelope: Envelope) -> ResumePoint | None:
    """The resume point a screen event leaves on its device (None for any other event)."""
    event = envelope.event
    if not isinstance(event, Activity.ScreenShown):
        return None
    return ResumePoint(
        event.screen, event.application_id, event.step, event.cart_id, envelope.recorded_at
    )


def refused(envelope: Envelope) -> bool:
    """Whether the event refuses personalization (what clears every resume point)."""
    event = envelope.event
    return isinstance(event, Activity.PersonalizationSet) and not event.allowed
