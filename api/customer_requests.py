"""What every customer action route takes: its headers (If-Match, If-None-Match,
Idempotency-Key, X-Channel), the customer's principal, and the metadata its events record."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID, uuid4

from litestar import Request
from litestar.exceptions import ValidationException
from litestar.params import HeaderParameter

from aggregates.metadata import CHANNELS, EventMeta
from api.auth import CUSTOMER_CHANNELS as _CUSTOMER_CHANNELS
from api.auth import Principal
from api.problems import CHANNEL_NOT_ALLOWED

IfMatch = Annotated[
    str | None,
    HeaderParameter(
        name="If-Match",
        required=False,
        description=(
            'The version the change was based on, as its ETag gave it: "3" (412 if stale;'
            ' a weak W/"3" is 412 too, since writes compare strongly).'
        ),
    ),
]
IfNoneMatch = Annotated[
    str | None,
    HeaderParameter(
        name="If-None-Match",
        required=False,
        description="ETags the client holds; 304 without a body when one is current.",
    ),
]
IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        required=False,
        description="A UUID per action; a retry with the same key is answered, not repeated.",
    ),
]
ChannelHeader = Annotated[
    str | None,
    HeaderParameter(
        name="X-Channel",
        required=False,
        description=(
            "web, app, chat, email, sms, phone or store (default: the channel the device"
            " registered with, else web). agent and system are not a customer's channels: 403."
        ),
    ),
]

Me = Request[Principal, Any, Any]

CUSTOMER_CHANNELS = _CUSTOMER_CHANNELS
"""Where a customer's own device may say an action happened; agent and system actions come
from those actors' routes, so an event's channel can be trusted to say who acted."""


def idempotency_key_of(value: str | None) -> UUID:
    if value is None:
        return uuid4()
    try:
        return UUID(value)
    except ValueError:
        raise ValidationException(
            "Idempotency-Key must be a UUID",
            extra=[{"key": "Idempotency-Key", "source": "header", "message": "not a UUID"}],
        ) from None


def customer_meta(principal: Principal, channel: str | None) -> EventMeta:
    """Where the action happened: `X-Channel`, else the channel the device registered with,
    else web."""
    chosen = channel if channel is not None else principal.channel or "web"
    if chosen not in CHANNELS:
        raise ValidationException(
            f"X-Channel must be one of {', '.join(sorted(CUSTOMER_CHANNELS))}",
            extra=[{"key": "X-Channel", "source": "header", "message": "unknown channel"}],
        )
    if chosen not in CUSTOMER_CHANNELS:
        raise CHANNEL_NOT_ALLOWED(
            f"X-Channel {chosen} is for agents and the system, not a customer's device token",
            field="X-Channel",
        )
    return EventMeta(channel=chosen, device=principal.device, actor_type="customer")  # type: ignore[arg-type]
