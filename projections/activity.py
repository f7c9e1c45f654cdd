"""The activity part of the session view: recently viewed products, recent searches, whether
the customer allows personalization (as the consent ledger says: `projections.consent`), and
the resume point a device's screen events leave.

Bounded: the last `MAX_RECENTLY_VIEWED` products (a sku once, where it was last seen) and
`MAX_RECENT_SEARCHES` searches; the log keeps everything. A refusal of personalization empties
them (and the devices' resume points: `projections.session`).

A guest's activity carried at sign-in (`Activity.Imported`) joins the customer's by when each
was recorded, a sku or query once, within the same bounds; the guest's own view lets go of what
went (`Activity.MergedInto`), so what they do next is what a later sign-in carries.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import TypeVar
from uuid import UUID

import msgspec

from aggregates.activity import MAX_RECENT_SEARCHES, MAX_RECENTLY_VIEWED, Activity
from projections.consent import personalization_changed
from projections.envelope import Envelope

T = TypeVar("T")


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
    if isinstance(event, Activity.Imported):
        products = [
            ViewedProduct(p.sku, p.name, p.price, p.currency, p.at, p.device)
            for p in event.products
        ]
        searches = [RecentSearch(s.query, s.results, s.at) for s in event.searches]
        return msgspec.structs.replace(
            view,
            recently_viewed=_newest(
                [*view.recently_viewed, *products],
                lambda p: p.viewed_at,
                lambda p: p.sku,
                MAX_RECENTLY_VIEWED,
            ),
            recent_searches=_newest(
                [*view.recent_searches, *searches],
                lambda s: s.searched_at,
                lambda s: s.query,
                MAX_RECENT_SEARCHES,
            ),
        )
    if isinstance(event, Activity.MergedInto):
        return ActivityView(personalization=view.personalization)
    if isinstance(event, Activity.PersonalizationSet):
        return consented(view, event.allowed)
    return view


def consented(view: ActivityView, given: bool) -> ActivityView:
    """`view` after a personalization choice: a refusal empties it."""
    if given:
        return msgspec.structs.replace(view, personalization=True)
    return ActivityView(personalization=False)


def _newest(
    entries: list[T], when: Callable[[T], datetime], key: Callable[[T], str], limit: int
) -> list[T]:
    """`entries` newest first, each key once (at its newest), the first `limit` of them; of
    two at the same time, the one listed first (the view's own) goes first."""
    seen: set[str] = set()
    kept: list[T] = []
    for entry in sorted(entries, key=when, reverse=True):
        if key(entry) not in seen:
            seen.add(key(entry))
            kept.append(entry)
    return kept[:limit]


def resume_point(envelope: Envelope) -> ResumePoint | None:
    """The resume point a screen event leaves on its device (None for any other event)."""
    event = envelope.event
    if not isinstance(event, Activity.ScreenShown):
        return None
    return ResumePoint(
        event.screen, event.application_id, event.step, event.cart_id, envelope.recorded_at
    )


def refused(envelope: Envelope) -> bool:
    """Whether the event refuses personalization (what clears every resume point): a
    withdrawal in the consent ledger, or a refusal recorded before the ledger existed."""
    return personalization_changed(envelope) is False
