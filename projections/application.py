"""The applications part of the session view: each of the customer's applications as a device
resumes it (the step it is at, the steps done, every answer saved, where it was last worked on).

The form's definition is not copied here: a device reads it with the application
(`GET /v1/me/applications/{id}`); the outline of its steps (name, title, skip condition) is, so
that each step's status (done, to do, skipped) can be shown. The step an application moved on
to is in the event that moved it (`StepCompleted.next_step`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

import msgspec

from aggregates.application import Application
from aggregates.forms import Answer, Condition
from projections.envelope import Envelope
from projections.recent import kept

Status = Literal["in_progress", "submitted", "withdrawn", "expired", "moved"]
MAX_APPLICATIONS = 20
"""Applications a session keeps: every one in progress, then the most recently active others."""
MAX_PLACES = 10
"""Devices and channels an application remembers its last activity on."""


class StepOutline(msgspec.Struct, frozen=True, gc=False):
    name: str
    title: str
    skip_if: Condition | None = None


class Activity(msgspec.Struct, frozen=True, gc=False):
    """When the application was last worked on from one device on one channel."""

    device: str | None
    channel: str
    last_seen: datetime


class ApplicationView(msgspec.Struct, frozen=True, gc=False):
    application_id: UUID
    form_type: str
    form_version: int
    title: str
    version: int
    status: Status
    current_step: str | None
    steps: list[StepOutline]
    completed: dict[str, dict[str, Answer]]
    drafts: dict[str, dict[str, Answer]]
    started_at: datetime
    last_activity: datetime
    activity: list[Activity]
    moved_from: UUID | None = None
    """The original, another subject's (a guest's), this one was recorded anew from."""
    moved_to: UUID | None = None
    """Moved: the application it was recorded anew as, for the customer who signed in."""

    @property
    def completed_steps(self) -> list[str]:
        return [s.name for s in self.steps if s.name in self.completed]


def apply(views: list[ApplicationView], envelope: Envelope) -> list[ApplicationView]:
    """Fold one application event into the customer's list (the most recently active first)."""
    event = envelope.event
    if isinstance(event, Application.Started | Application.Imported):
        return _kept([_started(event, envelope), *views])
    found = next((v for v in views if v.application_id == envelope.stream_id), None)
    if found is None:
        return views  # an application the list let go of
    changed = _changed(found, envelope)
    return _kept([changed, *(v for v in views if v is not found)])


def _started(
    event: Application.Started | Application.Imported, envelope: Envelope
) -> ApplicationView:
    form = event.form
    started = ApplicationView(
        application_id=envelope.stream_id,
        form_type=form.type,
        form_version=form.version,
        title=form.title,
        version=envelope.version,
        status="in_progress",
        current_step=form.steps[0].name,
        steps=[StepOutline(s.name, s.title, s.skip_if) for s in form.steps],
        completed={},
        drafts={},
        started_at=envelope.recorded_at,
        last_activity=envelope.recorded_at,
        activity=_touched([], envelope),
    )
    if isinstance(event, Application.Started):
        return started
    return msgspec.structs.replace(
        started,
        current_step=event.current,
        completed=event.completed,
        drafts=event.drafts,
        started_at=event.started_at or envelope.recorded_at,
        moved_from=event.moved_from,
    )


def _changed(view: ApplicationView, envelope: Envelope) -> ApplicationView:
    event = envelope.event
    completed, drafts = view.completed, view.drafts
    status, current, moved_to = view.status, view.current_step, view.moved_to
    if isinstance(event, Application.DraftSaved):
        draft = {**drafts.get(event.step, {}), **event.values}
        draft = {k: v for k, v in draft.items() if v is not None}
        drafts = {**drafts, event.step: draft}
    elif isinstance(event, Application.StepCompleted):
        completed = {**completed, event.step: event.values}
        drafts = {k: v for k, v in drafts.items() if k != event.step}
        current = event.next_step
    elif isinstance(event, Application.SteppedBack):
        current = event.step
    elif isinstance(event, Application.Submitted):
        status, current = "submitted", None
    elif isinstance(event, Application.Withdrawn):
        status, current = "withdrawn", None
    elif isinstance(event, Application.ExpiredIdle):
        status, current = "expired", None
    elif isinstance(event, Application.MovedTo):
        status, current, moved_to = "moved", None, event.to
    return msgspec.structs.replace(
        view,
        version=envelope.version,
        status=status,
        current_step=current,
        completed=completed,
        drafts=drafts,
        moved_to=moved_to,
        last_activity=envelope.recorded_at,
        activity=_touched(view.activity, envelope),
    )


def _touched(activity: list[Activity], envelope: Envelope) -> list[Activity]:
    device = envelope.meta.device if envelope.meta is not None else None
    here = Activity(device, envelope.channel, envelope.recorded_at)
    others = [a for a in activity if (a.device, a.channel) != (device, envelope.channel)]
    return [here, *others][:MAX_PLACES]


def _kept(views: list[ApplicationView]) -> list[ApplicationView]:
    return kept(
        views,
        MAX_APPLICATIONS,
        finished=lambda v: v.status != "in_progress",
        ident=lambda v: v.application_id,
    )
