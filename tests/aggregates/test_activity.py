"""The activity stream: what it records, what it refuses, and that its tiny state stands up
from what the session view carries exactly as a replay of its events does."""

from __future__ import annotations

from decimal import Decimal
from uuid import uuid4

import pytest

from aggregates.activity import (
    MAX_ITEMS,
    Activity,
    ActivityState,
    OnScreen,
    Searched,
    Viewed,
)
from aggregates.errors import ConsentRequired, InvalidValue


def test_items_are_recorded_in_order_one_event_each() -> None:
    activity = Activity(subject_id=uuid4())
    activity.record(
        [
            Viewed(sku="MUG-1", name="Mug", price=Decimal("2.5"), currency="EUR"),
            Searched(query="tea", results=4),
            OnScreen(screen="checkout", cart_id=uuid4()),
        ]
    )
    events = activity.collect_events()
    assert [type(e).__name__ for e in events] == [
        "Started",
        "ProductViewed",
        "Searched",
        "ScreenShown",
    ]
    assert events[1].price == Decimal("2.50"), "kept at the currency's minor unit"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("item", "field"),
    [
        (Viewed(sku="MUG-1", name="Mug", price=Decimal("2.5")), "items[0].currency"),
        (Viewed(sku="MUG-1", name="Mug", price=Decimal("2.501"), currency="EUR"), "items[0].price"),
        (Searched(query="   "), "items[0].query"),
        (Searched(query="tea", results=-1), "items[0].results"),
        (OnScreen(screen="x" * 101), "items[0].screen"),
    ],
)
def test_a_bad_item_is_refused_and_nothing_is_recorded(item: Viewed, field: str) -> None:
    activity = Activity(subject_id=uuid4())
    activity.collect_events()
    with pytest.raises(InvalidValue) as refused:
        activity.record([item])
    assert refused.value.field == field
    assert activity.collect_events() == []


def test_a_request_is_bounded() -> None:
    activity = Activity(subject_id=uuid4())
    with pytest.raises(InvalidValue):
        activity.record([])
    with pytest.raises(InvalidValue):
        activity.record([Searched(query="tea")] * (MAX_ITEMS + 1))


def test_nothing_is_recorded_while_personalization_is_refused() -> None:
    activity = Activity(subject_id=uuid4())
    activity.set_personalization(False)
    with pytest.raises(ConsentRequired) as refused:
        activity.record([Searched(query="tea")])
    assert refused.value.purpose == "personalization"
    activity.set_personalization(True)
    activity.record([Searched(query="tea")])


def test_the_state_a_view_carries_stands_up_what_a_replay_gives() -> None:
    subject = uuid4()
    activity = Activity(subject_id=subject)
    activity.record([Searched(query="tea")])
    activity.set_personalization(False)
    events = activity.collect_events()
    replayed = None
    for event in events:
        replayed = event.mutate(replayed)
    assert isinstance(replayed, Activity)
    restored = Activity.restore(activity.id, len(events), ActivityState(subject, False))
    assert restored.snapshot_state() == replayed.snapshot_state()
    assert (restored.id, restored.version) == (replayed.id, replayed.version)
    with pytest.raises(ConsentRequired):
        restored.record([Searched(query="tea")])
