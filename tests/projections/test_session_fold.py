"""The session fold is pure: events in, view out; placeholders change nothing."""

from __future__ import annotations

from decimal import Decimal
from uuid import uuid4

import pytest

from aggregates.cart import Cart
from projections.envelope import Envelope, VersionGap
from projections.session import SESSION, SessionView
from projections.view import Folded
from tests.helpers import envelopes_of


def fold(folded: Folded[SessionView] | None, envelopes: list[Envelope]) -> Folded[SessionView]:
    return SESSION.fold(folded or SESSION.empty(), envelopes)


def test_the_view_follows_the_cart_and_the_devices() -> None:
    cart = Cart(subject_id=uuid4())
    cart.add_item("MUG", "Mug", Decimal("2.50"), 2)
    cart.add_item("TEA", "Tea", Decimal("1.00"), 1)
    first = envelopes_of(cart, "phone")
    cart.remove_item("TEA")
    cart.change_quantity("MUG", 3)
    second = envelopes_of(cart, "laptop", start=10)
    folded = fold(None, first + second)
    view = folded.state
    assert view.cart is not None
    assert view.cart.version == 5
    assert [(i.sku, i.quantity, i.line_total) for i in view.cart.items] == [
        ("MUG", 3, Decimal("7.50"))
    ]
    assert view.cart.total == Decimal("7.50")
    assert [d.device for d in view.devices] == ["laptop", "phone"]
    assert folded.streams == {cart.id: 5}
    assert fold(folded, second) == folded, "an event already folded is not applied twice"
    assert not SESSION.follows(folded, second), "a repeat is not what comes next"


def test_erased_placeholders_are_skipped() -> None:
    cart = Cart(subject_id=uuid4())
    [opened] = envelopes_of(cart, "phone")
    placeholder = Envelope(
        opened.position,
        opened.stream_id,
        1,
        opened.subject_id,
        opened.topic,
        opened.channel,
        opened.recorded_at,
        1,
        None,
        None,
    )
    assert fold(None, [placeholder]) == SESSION.empty()


def test_an_event_that_commits_late_on_another_stream_is_not_dropped() -> None:
    """Positions across streams are not commit order: an event of another stream with a lower
    position can arrive after the view has folded a higher one."""
    subject = uuid4()
    cart = Cart(subject_id=subject)
    [on_phone] = envelopes_of(cart, "phone", start=5)
    later = Cart(subject_id=subject, generation=2)
    [on_laptop] = envelopes_of(later, "laptop", start=4)
    folded = fold(None, [on_phone, on_laptop])
    assert {d.device for d in folded.state.devices} == {"phone", "laptop"}
    assert fold(folded, [on_laptop, on_phone]) == folded, "a repeat is not applied twice"


def test_a_gap_in_a_stream_is_an_integrity_violation() -> None:
    cart = Cart(subject_id=uuid4())
    cart.add_item("MUG", "Mug", Decimal("2.50"), 1)
    cart.add_item("TEA", "Tea", Decimal("1.00"), 1)
    opened, _, tea = envelopes_of(cart, "phone")
    with pytest.raises(VersionGap, match="version 3"):
        fold(None, [opened, tea])
    assert not SESSION.follows(SESSION.empty(), [opened, tea])
