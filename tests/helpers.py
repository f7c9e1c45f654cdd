"""Constants and types shared by tests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from aggregates.cart import Cart
from aggregates.metadata import EventMeta
from projections.envelope import Envelope

SECRET = "test-secret-" + "x" * 40

TokenFactory = Callable[..., dict[str, str]]
"""auth(customer_id, device="phone", role="customer") -> headers with a bearer token."""


def envelopes_of(cart: Cart, device: str = "phone", start: int = 1) -> list[Envelope]:
    """The cart's pending events as a fold would receive them, at positions from `start`."""
    return [
        Envelope(
            position=start + i,
            stream_id=cart.id,
            version=event.originator_version,
            subject_id=cart.subject_id,
            topic=type(event).__qualname__,
            channel="app",
            recorded_at=datetime.now(UTC),
            key_version=1,
            event=event,  # type: ignore[arg-type]
            meta=EventMeta("app", device),
        )
        for i, event in enumerate(cart.collect_events())
    ]
