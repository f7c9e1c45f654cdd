"""The session fold is pure: events in, view out; placeholders change nothing."""

from __future__ import annotations

from decimal import Decimal
from uuid import uuid4

from aggregates.cart import Cart
from projections.envelope import Envelope
from projections.session import SessionView, fold
from tests.helpers import envelopes_of


def test_the_view_follows_the_cart_and_the_devices() -> None:
    cart = Cart(subject_id=uuid4())
    cart.add_item("MUG", "Mug", Decimal("2.50"), 2)
    cart.add_item("TEA", "Tea", Decimal("1.00"), 1)
    first = envelopes_of(cart, "phone")
    cart.remove_item("TEA")
    cart.change_quantity("MUG", 3)
    second = envelopes_of(cart, "laptop", start=10)
    view = fold(SessionView(), first + second)
    assert view.cart is not None
    assert view.cart.version == 5
    assert [(i.sku, i.quantity, i.line_total) for i in view.cart.items] == [
        ("MUG", 3, Decimal("7.50"))
    ]
    assert view.cart.total == Decimal("7.50")
    assert [d.device for d in view.devices] == ["laptop", "phone"]
    assert view.position == 11
    assert fold(view, second) == view, "an event already folded is not applied twice"


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
        None,
        None,
    )
    assert fold(SessionView(), [placeholder]) == SessionView()
