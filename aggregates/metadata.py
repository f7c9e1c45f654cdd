"""What every event records beside what happened: the channel, device and actor."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, get_args

import msgspec

Channel = Literal["web", "app", "chat", "email", "sms", "phone", "store", "agent", "system"]
ActorType = Literal["customer", "agent", "bot", "system"]

CHANNELS: frozenset[str] = frozenset(get_args(Channel))
ACTOR_TYPES: frozenset[str] = frozenset(get_args(ActorType))


class EventMeta(msgspec.Struct, frozen=True, gc=False):
    """Who did it, where. The device and actor id are personal: they are stored encrypted.
    `occurred_at`: when a device that queued the action offline says it happened (recorded,
    never used to order: device clocks disagree)."""

    channel: Channel
    device: str | None = None
    actor_type: ActorType = "customer"
    actor_id: str | None = None
    occurred_at: datetime | None = None
