"""A multi-step application (a loan, an account opening): drafts, completed steps, submission.

It keeps the form definition it started with (in its first event), so it validates and resumes
the same way whatever definitions the operator ships later. A draft saves any of a step's fields
as they are; completing a step validates every field of it (`aggregates.forms.check_step`) and
moves on to the next step that applies. Whether a step applies is decided afresh from the
completed answers each time (`skip_if`), so going back and changing an answer can bring a step
into play, and submitting then waits for it. Each field remembers the version that last changed
it, so the service can tell a stale write that touches fields changed since from one that does
not (a draft of a field the other device did not touch is no conflict).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any, Literal, Self
from uuid import UUID, uuid5

import msgspec
from eventsourcing.domain import Aggregate, event

from aggregates.errors import DomainError, InvalidState, InvalidValue, NotFound
from aggregates.forms import (
    Answer,
    Form,
    Problem,
    Step,
    check_step,
    next_step,
    skipped,
    unknown_fields,
)
from aggregates.restoring import restored

Status = Literal["in_progress", "submitted", "withdrawn", "expired", "moved"]
"""moved: recorded anew for another subject (a guest's, for the customer who signed in)."""
APPLICATION_NAMESPACE = UUID("0b6c1f52-8e0d-4a57-b3a4-6c2f9d1e7a40")
MOVED_NAMESPACE = UUID("9a3e51c7-0d2b-4f86-8c14-e57b2a6d93f0")
MAX_DRAFT_TEXT = 10_000
"""The longest text a draft keeps for one field: drafts are not validated, but bounded."""
MAX_NUMBER = 2**53 - 1
"""The largest whole number a draft keeps: what every JSON parser reads exactly."""


class StepProblems(DomainError):
    """Answers refused: `problems` names every failing field (`step.field`)."""

    def __init__(self, message: str, problems: list[Problem]) -> None:
        super().__init__(message, field=problems[0].field if problems else None)
        self.problems = problems


class Expired(InvalidState):
    """The application sat idle past the operator's limit: it can no longer change."""


class ApplicationState(msgspec.Struct, frozen=True, gc=False):
    """What a snapshot holds: the state, and the times expiry and the answers read."""

    subject_id: UUID
    form: Form
    status: Status
    drafts: dict[str, dict[str, Answer]]
    completed: dict[str, dict[str, Answer]]
    changed_at: dict[str, int]
    current: str | None
    created_on: datetime | None
    modified_on: datetime | None
    moved_to: UUID | None = None


class Application(Aggregate):
    class Started(Aggregate.Created):
        subject_id: UUID
        form: Form
        start_key: UUID

    class Imported(Aggregate.Created):
        """An application in progress moved here from another subject (a guest who signed in):
        the same form, at the same step, with every answer; `moved_from` is the original."""

        subject_id: UUID
        form: Form
        start_key: UUID
        moved_from: UUID
        completed: dict[str, dict[str, Answer]]
        drafts: dict[str, dict[str, Answer]]
        current: str | None
        started_at: datetime | None

        def apply(self, aggregate: Any) -> None:
            aggregate.completed = {step: dict(values) for step, values in self.completed.items()}
            aggregate.drafts = {step: dict(values) for step, values in self.drafts.items()}
            aggregate.current = self.current
            aggregate.changed_at = {
                f"{step}.{name}": 1
                for answers in (self.completed, self.drafts)
                for step, values in answers.items()
                for name in values
            }

    class MovedTo(Aggregate.Event):
        """Closed: recorded anew as application `to` of subject `to_subject`."""

        to: UUID
        to_subject: UUID

    class DraftSaved(Aggregate.Event):
        step: str
        values: dict[str, Answer]

    class StepCompleted(Aggregate.Event):
        """`next_step`: the step the application moved on to (None: every step is done)."""

        step: str
        values: dict[str, Answer]
        next_step: str | None

    class SteppedBack(Aggregate.Event):
        step: str

    class Submitted(Aggregate.Event):
        pass

    class Withdrawn(Aggregate.Event):
        pass

    class ExpiredIdle(Aggregate.Event):
        pass

    @staticmethod
    def create_id(subject_id: UUID, start_key: UUID) -> UUID:
        """The application opened by the start request with idempotency key `start_key`: a
        retried start opens the same one, never a second."""
        return uuid5(APPLICATION_NAMESPACE, f"{subject_id}/{start_key}")

    @event(Started)
    def __init__(self, subject_id: UUID, form: Form, start_key: UUID) -> None:
        self.subject_id = subject_id
        self.form = form
        self.status: Status = "in_progress"
        self.drafts: dict[str, dict[str, Answer]] = {}
        self.completed: dict[str, dict[str, Answer]] = {}
        self.changed_at: dict[str, int] = {}
        """`step.field` -> the version whose event last changed the field."""
        self.current: str | None = self.form.steps[0].name
        self.moved_to: UUID | None = None

    @classmethod
    def imported(cls, subject_id: UUID, source: Application) -> Self:
        """`source`, in progress (another subject's: a guest's who signed in), recorded anew
        for `subject_id`: one id per original, so moving it twice opens the same stream."""
        source._check_in_progress()
        start_key = uuid5(MOVED_NAMESPACE, str(source.id))
        return cls._create(
            cls.Imported,
            id=cls.create_id(subject_id, start_key),
            subject_id=subject_id,
            form=source.form,
            start_key=start_key,
            moved_from=source.id,
            completed=source.completed,
            drafts=source.drafts,
            current=source.current,
            started_at=source.created_on,
        )

    # -- snapshots (drafts are autosaved: a stream grows long) ------------------------------

    @classmethod
    def snapshot_type(cls) -> type[ApplicationState]:
        return ApplicationState

    def snapshot_state(self) -> ApplicationState:
        return ApplicationState(
            self.subject_id,
            self.form,
            self.status,
            self.drafts,
            self.completed,
            self.changed_at,
            self.current,
            self.created_on,
            self.modified_on,
            self.moved_to,
        )

    @classmethod
    def restore(cls, stream_id: UUID, version: int, state: ApplicationState) -> Self:
        return restored(
            cls,
            stream_id,
            version,
            created_on=state.created_on,
            modified_on=state.modified_on,
            subject_id=state.subject_id,
            form=state.form,
            status=state.status,
            drafts={step: dict(values) for step, values in state.drafts.items()},
            completed={step: dict(values) for step, values in state.completed.items()},
            changed_at=dict(state.changed_at),
            current=state.current,
            moved_to=state.moved_to,
        )

    # -- what the state says ------------------------------------------------------------------

    def applies(self, step: Step) -> bool:
        return not skipped(step, self.completed)

    @property
    def steps_to_do(self) -> list[str]:
        """The steps that apply and are not complete yet: submission waits for these."""
        return [s.name for s in self.form.steps if self.applies(s) and s.name not in self.completed]

    def answers(self, step: str) -> dict[str, Answer]:
        """What the step shows: its completed answers, with newer drafts over them."""
        return {**self.completed.get(step, {}), **self.drafts.get(step, {})}

    def changed_since(self, version: int, step: str, fields: list[str]) -> list[str]:
        """Which of `fields` of `step` an event after `version` changed."""
        return [f for f in fields if self.changed_at.get(f"{step}.{f}", 0) > version]

    def is_idle(self, now: datetime, limit: timedelta) -> bool:
        last = self.modified_on
        return self.status == "in_progress" and last is not None and now - last >= limit

    # -- commands -----------------------------------------------------------------------------

    def save_draft(self, step: str, values: Mapping[str, Answer]) -> None:
        """Keep any of `step`'s fields as given, unvalidated (a `None` clears one)."""
        spec = self._open_step(step)
        problems = unknown_fields(spec, values)
        problems += [
            Problem(f"{step}.{name}", f"a draft keeps at most {MAX_DRAFT_TEXT} characters")
            for name, value in values.items()
            if isinstance(value, str) and len(value) > MAX_DRAFT_TEXT
        ]
        problems += [
            Problem(f"{step}.{name}", "is too large a number")
            for name, value in values.items()
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_NUMBER
        ]
        if problems:
            raise StepProblems(f"the draft of {step} has fields that cannot be saved", problems)
        if not values:
            raise InvalidValue("a draft saves at least one field", field="values")
        self._draft_saved(step, dict(values))

    @event(DraftSaved)
    def _draft_saved(self, step: str, values: dict[str, Answer]) -> None:
        draft = self.drafts.setdefault(step, {})
        for name, value in values.items():
            self.changed_at[f"{step}.{name}"] = self.version + 1  # this event's version
            if value is None:
                draft.pop(name, None)
            else:
                draft[name] = value

    def complete_step(self, step: str, values: Mapping[str, Answer], today: date) -> None:
        """Validate every field of `step` (given `values` over its draft) and move on; a
        StepProblems names each failing field. Every earlier step that applies must be done."""
        spec = self._open_step(step)
        if not self.applies(spec):
            raise InvalidState(f"step {step} does not apply to this application", field="step")
        before = self.form.steps[: self.form.index(step)]
        missing = [s.name for s in before if self.applies(s) and s.name not in self.completed]
        if missing:
            raise InvalidState(f"complete {', '.join(missing)} before {step}", field="step")
        clean, problems = check_step(spec, {**self.answers(step), **values}, today)
        if problems:
            raise StepProblems(f"step {step} has answers that need fixing", problems)
        after = next_step(self.form.steps, {**self.completed, step: clean}, step)
        self._step_completed(step, clean, after)

    @event(StepCompleted)
    def _step_completed(self, step: str, values: dict[str, Answer], next_step: str | None) -> None:
        shown = self.answers(step)
        for name in {*shown, *values}:
            if shown.get(name) != values.get(name):
                self.changed_at[f"{step}.{name}"] = self.version + 1
        self.completed[step] = values
        self.drafts.pop(step, None)
        self.current = next_step

    def go_back(self, step: str) -> None:
        """Make an earlier step (one that applies) the current one again."""
        spec = self._open_step(step)
        if not self.applies(spec):
            raise InvalidState(f"step {step} does not apply to this application", field="step")
        position = len(self.form.steps) if self.current is None else self.form.index(self.current)
        if self.form.index(step) >= position:
            raise InvalidState(f"{step} is not before the current step", field="step")
        self._stepped_back(step)

    @event(SteppedBack)
    def _stepped_back(self, step: str) -> None:
        self.current = step

    def submit(self) -> None:
        self._check_in_progress()
        todo = self.steps_to_do
        if todo:
            raise StepProblems(
                "the application has steps to complete before it can be submitted",
                [Problem(name, "is not complete") for name in todo],
            )
        self._submitted()

    @event(Submitted)
    def _submitted(self) -> None:
        self.status = "submitted"
        self.current = None

    def withdraw(self) -> None:
        if self.status not in ("in_progress", "submitted"):
            self._check_in_progress()
        self._withdrawn()

    @event(Withdrawn)
    def _withdrawn(self) -> None:
        self.status = "withdrawn"
        self.current = None

    def expire(self) -> None:
        """Record that the application sat idle past the limit (the service decides when)."""
        self._check_in_progress()
        self._expired()

    @event(ExpiredIdle)
    def _expired(self) -> None:
        self.status = "expired"
        self.current = None

    def move_to(self, to: UUID, to_subject: UUID) -> None:
        """Close the application: it was recorded anew as `to` (see `imported`)."""
        self._check_in_progress()
        self._moved_to(to, to_subject)

    @event(MovedTo)
    def _moved_to(self, to: UUID, to_subject: UUID) -> None:
        self.status = "moved"
        self.current = None
        self.moved_to = to

    # -- checks -------------------------------------------------------------------------------

    def _check_in_progress(self) -> None:
        if self.status == "expired":
            raise Expired("the application expired after sitting idle; start a new one")
        if self.status == "moved":
            raise InvalidState("the application moved to the account that signed in")
        if self.status != "in_progress":
            raise InvalidState(f"the application is {self.status.replace('_', ' ')}")

    def _open_step(self, step: str) -> Step:
        self._check_in_progress()
        spec = self.form.step(step)
        if spec is None:
            raise NotFound(f"the form has no step {step!r}", field="step")
        return spec
