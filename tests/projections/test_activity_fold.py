"""The activity part of the session fold: recently viewed (a sku once, newest first, bounded),
searches, each device's resume point, and a refusal of personalization clearing them."""

from __future__ import annotations

from decimal import Decimal
from uuid import uuid4

from aggregates.activity import Activity, OnScreen, Searched, Viewed
from aggregates.cart import Cart
from projections.activity import MAX_RECENT_SEARCHES
from projections.session import SESSION
from tests.helpers import envelopes_of


def test_resume_points_stay_with_their_device_and_a_refusal_clears_the_activity() -> None:
    subject = uuid4()
    activity = Activity(subject_id=subject)
    activity.record([Viewed(sku="MUG", name="Mug"), OnScreen(screen="product")])
    on_phone = envelopes_of(activity, "phone")
    activity.record([Viewed(sku="TEA", name="Tea"), Viewed(sku="MUG", name="Mug")])
    activity.record([Searched(query=f"q{n}") for n in range(MAX_RECENT_SEARCHES + 2)])
    on_laptop = envelopes_of(activity, "laptop", start=10)
    cart = Cart(subject_id=subject)
    cart.add_item("MUG", "Mug", Decimal(1), 1)
    on_phone_again = envelopes_of(cart, "phone", start=40)

    view = SESSION.fold(SESSION.empty(), on_phone + on_laptop + on_phone_again).state
    assert [p.sku for p in view.activity.recently_viewed] == ["MUG", "TEA"]
    assert [p.device for p in view.activity.recently_viewed] == ["laptop", "laptop"]
    assert len(view.activity.recent_searches) == MAX_RECENT_SEARCHES
    assert view.activity.recent_searches[0].query == f"q{MAX_RECENT_SEARCHES + 1}"
    devices = {d.device: d for d in view.devices}
    phone = devices["phone"]
    assert phone.last_action == "Cart.ItemAdded"
    assert phone.resume_point is not None
    assert phone.resume_point.screen == "product"
    assert devices["laptop"].resume_point is None

    activity.set_personalization(False)
    refused = SESSION.fold(
        SESSION.empty(),
        on_phone + on_laptop + on_phone_again + envelopes_of(activity, "laptop", start=50),
    ).state
    assert not refused.activity.personalization
    assert refused.activity.recently_viewed == []
    assert refused.activity.recent_searches == []
    assert all(d.resume_point is None for d in refused.devices)
