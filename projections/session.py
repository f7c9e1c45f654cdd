"""The session view: what a phone or laptop loads to pick up where the customer left off.

One subject view (see `projections.view`) made of parts, each a pure fold of its own: the cart
(`projections.cart`), the applications (`projections.application`), the conversations
(`projections.conversation`), the activity (`projections.activity`: recently viewed, recent
searches, personalization), the consents (`projections.consent`: each purpose's last choice)
and the resume point of each device. Another part is added the same
way: a field of `SessionView`, a line in `apply`, and a new `version`.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from aggregates.activity import Activity
from aggregates.application import Application
from aggregates.cart import Cart
from aggregates.consent import Consent
from aggregates.conversation import Conversation
from projections import activity, application, cart, consent, conversation
from projections.activity import ActivityView, ResumePoint
from projections.application import ApplicationView
from projections.cart import CartView
from projections.consent import Consents
from projections.conversation import ConversationView
from projections.envelope import Envelope
from projections.view import SubjectView

MAX_DEVICES = 20


class DeviceView(msgspec.Struct, frozen=True, gc=False):
    """One device: when it was last used, where, for what, and the screen it was last on (its
    resume point: what another device offers to continue from)."""

    device: str
    channel: str
    last_seen: datetime
    last_action: str
    resume_point: ResumePoint | None = None


class SessionView(msgspec.Struct, frozen=True, gc=False):
    cart: CartView | None = None
    devices: list[DeviceView] = msgspec.field(default_factory=list)
    applications: list[ApplicationView] = msgspec.field(default_factory=list)
    conversations: list[ConversationView] = msgspec.field(default_factory=list)
    activity: ActivityView = msgspec.field(default_factory=ActivityView)
    consents: Consents = msgspec.field(default_factory=dict)


def apply(view: SessionView, envelope: Envelope) -> SessionView:
    event = envelope.event
    applications, conversations = view.applications, view.conversations
    activity_view, consents = view.activity, view.consents
    if isinstance(event, Application.Event):
        applications = application.apply(applications, envelope)
    elif isinstance(event, Conversation.Event):
        conversations = conversation.apply(conversations, envelope)
    elif isinstance(event, Activity.Event):
        activity_view = activity.apply(activity_view, envelope)
        consents = consent.apply(consents, envelope)
    elif isinstance(event, Consent.Event):
        consents = consent.apply(consents, envelope)
        if (given := consent.personalization_changed(envelope)) is not None:
            activity_view = activity.consented(activity_view, given)
    return SessionView(
        cart=cart.apply(view.cart, envelope) if isinstance(event, Cart.Event) else view.cart,
        devices=_touch_device(view.devices, envelope),
        applications=applications,
        conversations=conversations,
        activity=activity_view,
        consents=consents,
    )


def _touch_device(devices: list[DeviceView], envelope: Envelope) -> list[DeviceView]:
    if activity.refused(envelope):
        devices = [msgspec.structs.replace(d, resume_point=None) for d in devices]
    meta = envelope.meta
    if meta is None or meta.device is None:
        return devices
    before = next((d for d in devices if d.device == meta.device), None)
    kept = before.resume_point if before is not None else None
    touched = DeviceView(
        device=meta.device,
        channel=envelope.channel,
        last_seen=envelope.recorded_at,
        last_action=envelope.topic.rsplit(":", 1)[-1],
        resume_point=activity.resume_point(envelope) or kept,
    )
    others = [d for d in devices if d is not before]
    return [touched, *others][:MAX_DEVICES]


SESSION = SubjectView("session", "session_views", SessionView, apply, version=9)
"""Version 2: the document carries the framework's per-stream versions (version 1 kept them in
the view itself). Version 3: the cart has a currency, and its totals are rounded to it.
Version 4: the customer's applications. Version 5: their conversations, with the last turns.
Version 6: a guest's cart, applications and conversations merged or moved at sign-in.
Version 7: their activity (recently viewed, searches, personalization), and each device's
resume point. Version 8: a guest's recent activity carried to the customer at sign-in, and let go
of in the guest's view. Version 9: the consent ledger (each purpose's last choice), which
personalization now follows."""
