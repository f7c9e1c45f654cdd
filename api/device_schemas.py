"""Bodies of the guest, device, handoff and sign-in routes, shown in the OpenAPI schema."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec

from api.auth import MAX_DEVICE_NAME
from api.patterns import END
from continuity.devices import Device
from continuity.guests import Linked as GuestLinked
from continuity.merge import MergeSummary

CustomerChannel = Literal["web", "app", "chat", "email", "sms", "phone", "store"]
DeviceName = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_DEVICE_NAME,
        pattern=r"^[^\x00-\x1f\x7f]+" + END,
        description="What the customer calls the device, as their device list shows it.",
        examples=["Pixel 8"],
    ),
]
MAX_TOKEN = 8192


class NewSession(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A guest's first device."""

    device_name: DeviceName
    channel: CustomerChannel = "app"


class Redeem(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A handoff code another device showed, for this device's own token."""

    code: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=32,
            description="As shown (`ABCDE-FGHJK`); any case, with or without the dash.",
            examples=["7K3MQ-9XR2F"],
        ),
    ]
    device_name: DeviceName
    channel: CustomerChannel = "web"


class DeviceSession(msgspec.Struct):
    """A device's own token, for `Authorization: Bearer`."""

    subject_id: UUID
    device_id: UUID
    token: str
    expires_at: datetime
    guest: bool
    """True until the guest signs in (`POST /v1/me/link`)."""


class HandoffCode(msgspec.Struct):
    """Show `code` to type, or `link` as a QR code; redeemed once, before `expires_at`."""

    code: str
    link: str
    expires_at: datetime


class DeviceInfo(msgspec.Struct):
    device_id: UUID
    name: str
    channel: str
    first_seen: datetime
    last_seen: datetime
    current: bool
    """The device this request came from."""

    @classmethod
    def of(cls, device: Device, current: UUID | None) -> DeviceInfo:
        return cls(
            device.device_id,
            device.name,
            device.channel,
            device.first_seen,
            device.last_seen,
            device.device_id == current,
        )


class LinkRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Sign a guest in: the identity provider's token for the known customer."""

    token: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=MAX_TOKEN,
            description="A customer's bearer token from the identity provider (or"
            " `continuity token`).",
        ),
    ]


class Linked(msgspec.Struct):
    """The guest signed in: this device now acts as the customer (`token` is its new token;
    the old one works too), and what moved from the guest."""

    subject_id: UUID
    guest_id: UUID | None
    """None when the device was the customer's already."""
    token: str | None
    expires_at: datetime | None
    merged: MergeSummary | None

    @classmethod
    def of(cls, linked: GuestLinked, token: str | None, expires_at: datetime | None) -> Linked:
        return cls(linked.customer_id, linked.guest_id, token, expires_at, linked.merged)
