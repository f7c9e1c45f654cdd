"""Bodies of the application routes (`/v1/me/applications`), shown in the OpenAPI schema."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec

from aggregates.application import MAX_DRAFT_TEXT, MAX_NUMBER, Application
from aggregates.forms import FORM_TYPE, MAX_FIELDS, NAME, Answer, Form, Outlined, skipped
from api.patterns import END
from projections.application import ApplicationView
from projections.envelope import Envelope

Status = Literal["in_progress", "submitted", "withdrawn", "expired", "moved"]
FormType = Annotated[
    str,
    msgspec.Meta(
        pattern="^" + FORM_TYPE.pattern + END,
        description="A form type the operator ships, such as personal-loan.",
        examples=["personal-loan"],
    ),
]
STEP_PATTERN = "^" + NAME.pattern + END
StepName = Annotated[str, msgspec.Meta(pattern=STEP_PATTERN, description="A step of the form.")]
AnswerValue = (
    Annotated[str, msgspec.Meta(max_length=MAX_DRAFT_TEXT)]
    | Annotated[int, msgspec.Meta(ge=-MAX_NUMBER, le=MAX_NUMBER)]
    | bool
    | None
)
FieldName = Annotated[str, msgspec.Meta(max_length=63)]
Values = Annotated[
    dict[FieldName, AnswerValue],
    msgspec.Meta(
        max_length=MAX_FIELDS,
        description=(
            "Answers by field name: text, email, phone, date (YYYY-MM-DD), choice and money"
            ' (a decimal string, "1250.00") as strings; integer as a number; boolean and'
            " consent as true or false. In a draft, null clears a field."
        ),
    ),
]


class StartApplication(msgspec.Struct, forbid_unknown_fields=True):
    form_type: FormType


class StepAnswers(msgspec.Struct, forbid_unknown_fields=True):
    values: Values


class GoBack(msgspec.Struct, forbid_unknown_fields=True):
    step: StepName


class StepSummary(msgspec.Struct):
    name: str
    title: str
    status: Literal["completed", "to_do", "skipped"]


class Place(msgspec.Struct):
    """When the application was last worked on from one device on one channel."""

    device: str | None
    channel: str
    last_seen: datetime


class ApplicationSummary(msgspec.Struct):
    """An application as the customer's list and session show it: where it is, what is
    saved (completed answers with newer drafts over them), and where it was last worked on."""

    application_id: UUID
    form_type: str
    form_version: int
    title: str
    version: int
    status: Status
    current_step: str | None
    steps: list[StepSummary]
    answers: dict[str, dict[str, Answer]]
    started_at: datetime
    last_activity: datetime
    activity: list[Place]

    @classmethod
    def of(cls, view: ApplicationView) -> ApplicationSummary:
        return cls(
            application_id=view.application_id,
            form_type=view.form_type,
            form_version=view.form_version,
            title=view.title,
            version=view.version,
            status=view.status,
            current_step=view.current_step,
            steps=[
                StepSummary(s.name, s.title, _status(s.name in view.completed, s, view.completed))
                for s in view.steps
            ],
            answers=_answers(view.completed, view.drafts),
            started_at=view.started_at,
            last_activity=view.last_activity,
            activity=[Place(a.device, a.channel, a.last_seen) for a in view.activity],
        )


class ApplicationDetail(msgspec.Struct):
    """One application with the form it was started on: `version` is what If-Match sends
    back (also in ETag); `answers` is what each step shows (completed answers, with newer
    drafts over them), `completed` what was validated; `steps_to_do` what submitting waits for."""

    application_id: UUID
    status: Status
    version: int
    current_step: str | None
    steps: list[StepSummary]
    steps_to_do: list[str]
    answers: dict[str, dict[str, Answer]]
    completed: dict[str, dict[str, Answer]]
    drafts: dict[str, dict[str, Answer]]
    form: Form
    started_at: datetime | None
    last_activity: datetime | None

    @classmethod
    def of(cls, app: Application) -> ApplicationDetail:
        steps = [
            StepSummary(s.name, s.title, _status(s.name in app.completed, s, app.completed))
            for s in app.form.steps
        ]
        return cls(
            application_id=app.id,
            status=app.status,
            version=app.version,
            current_step=app.current,
            steps=steps,
            steps_to_do=app.steps_to_do,
            answers=_answers(app.completed, app.drafts),
            completed=app.completed,
            drafts=app.drafts,
            form=app.form,
            started_at=app.created_on,
            last_activity=app.modified_on,
        )


def _status(
    done: bool, step: Outlined, completed: dict[str, dict[str, Answer]]
) -> Literal["completed", "to_do", "skipped"]:
    if done:
        return "completed"
    return "skipped" if skipped(step, completed) else "to_do"


def _answers(
    completed: dict[str, dict[str, Answer]], drafts: dict[str, dict[str, Answer]]
) -> dict[str, dict[str, Answer]]:
    return {
        step: {**completed.get(step, {}), **drafts.get(step, {})}
        for step in dict.fromkeys([*completed, *drafts])
    }


class HistoryEntry(msgspec.Struct):
    """One event of an application: what changed (the step and the answers it recorded), when,
    on which channel and device, and by whom (`actor_type`, and an agent's or system's id)."""

    version: int
    at: datetime
    change: str
    step: str | None
    values: dict[str, Answer] | None
    channel: str
    device: str | None
    actor_type: str
    actor_id: str | None

    @classmethod
    def of(cls, envelope: Envelope) -> HistoryEntry:
        event = envelope.event
        meta = envelope.meta
        return cls(
            version=envelope.version,
            at=envelope.recorded_at,
            change=envelope.topic.rsplit(":", 1)[-1],
            step=getattr(event, "step", None),
            values=getattr(event, "values", None),
            channel=envelope.channel,
            device=meta.device if meta is not None else None,
            actor_type=meta.actor_type if meta is not None else "system",
            actor_id=meta.actor_id if meta is not None else None,
        )


class AgentApplication(msgspec.Struct):
    """An application as an agent sees it: whose it is, its current state (as the customer's
    devices see it) and its full history."""

    subject_id: UUID
    application: ApplicationDetail
    history: list[HistoryEntry]
