"""The activity part of the session fold: recently viewed (a sku once, newest first, bounded),
searches, each device's resume point, a refusal of personalization clearing them, and a guest's
activity carried at sign-in joining by time."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from uuid import uuid4

from aggregates.activity import (
    MAX_RECENT_SEARCHES,
    MAX_RECENTLY_VIEWED,
    Activity,
    OnScreen,
    PastSearch,
    PastView,
    Searched,
    Viewed,
)
from aggregates.cart import Cart
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


def test_an_import_joins_by_time_a_sku_once_and_bounded_and_the_guest_lets_go() -> None:
    guest, customer = uuid4(), uuid4()
    mine = Activity(subject_id=customer)
    mine.record([Viewed(sku="MUG", name="Mug"), Viewed(sku="TEA", name="Tea")])
    mine.record([Searched(query="tea")])
    own = envelopes_of(mine, "laptop")
    tea_at, mug_at = own[2].recorded_at, own[1].recorded_at
    carried = [
        PastView("MUG", "Mug", None, None, tea_at + timedelta(seconds=1), "phone"),  # newer
        PastView("LAMP", "Lamp", None, None, mug_at - timedelta(seconds=1), "phone"),
        *(
            PastView(f"OLD-{n}", "Old", None, None, mug_at - timedelta(hours=1 + n), "phone")
            for n in range(MAX_RECENTLY_VIEWED)
        ),
    ]
    searches = [PastSearch("tea", 1, tea_at - timedelta(days=1)), PastSearch("mug", 2, tea_at)]
    mine.import_from(guest, carried, searches)
    view = SESSION.fold(SESSION.empty(), own + envelopes_of(mine, "laptop", start=10)).state
    shown = view.activity.recently_viewed
    assert [(p.sku, p.device) for p in shown[:4]] == [
        ("MUG", "phone"),
        ("TEA", "laptop"),
        ("LAMP", "phone"),
        ("OLD-0", "phone"),
    ]
    assert len(shown) == MAX_RECENTLY_VIEWED
    assert [s.query for s in view.activity.recent_searches] == ["tea", "mug"]

    theirs = Activity(subject_id=guest)
    theirs.record([Viewed(sku="LAMP", name="Lamp"), Searched(query="lamp")])
    theirs.merge_into(customer, 1, 1)
    left = SESSION.fold(SESSION.empty(), envelopes_of(theirs)).state.activity
    assert (left.recently_viewed, left.recent_searches, left.personalization) == ([], [], True)
