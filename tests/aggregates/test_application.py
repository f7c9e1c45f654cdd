"""The Application aggregate: drafts, steps completed in order, a step skipped by an earlier
answer, going back, submission only when every step that applies is done, withdrawal, expiry."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from uuid import uuid4

import pytest

from aggregates.application import Application, Expired, StepProblems
from aggregates.errors import InvalidState, NotFound
from aggregates.forms import Answer, Form
from aggregates.metadata import EventMeta
from continuity.form_catalog import load_forms
from continuity.mapper import EventMapper
from continuity.repository import IdempotencyKey, Repository
from continuity.store import EventStore

TODAY = date(2026, 11, 23)

IDENTITY: dict[str, Answer] = {
    "first_name": "Ada",
    "last_name": "Lovelace",
    "date_of_birth": "1990-12-10",
    "email": "ada@example.com",
    "phone": "+44 20 7946 0000",
    "address_line": "12 St James's Square",
    "postal_code": "SW1Y 4JH",
    "city": "London",
    "country": "IE",
}
EMPLOYED: dict[str, Answer] = {
    "status": "employed",
    "monthly_income": "3200",
    "monthly_expenses": "1100.00",
    "dependants": 0,
}
EMPLOYER: dict[str, Answer] = {"employer_name": "Analytical Engines", "years_employed": 4}
LOAN: dict[str, Answer] = {"amount": "12000", "term_months": "48", "purpose": "car"}
REVIEW: dict[str, Answer] = {"credit_check": True, "accurate": True}


def loan_form() -> Form:
    form = load_forms().latest("personal-loan")
    assert form is not None
    return form


def started() -> Application:
    return Application(subject_id=uuid4(), form=loan_form(), start_key=uuid4())


def test_a_retried_start_opens_the_same_application() -> None:
    subject, key = uuid4(), uuid4()
    assert Application.create_id(subject, key) == Application.create_id(subject, key)
    first = Application(subject_id=subject, form=loan_form(), start_key=key)
    assert first.id == Application.create_id(subject, key)
    assert Application.create_id(uuid4(), key) != first.id


def test_drafts_keep_any_fields_and_completing_validates_the_step_with_them() -> None:
    app = started()
    app.save_draft("identity", {"first_name": "Ada", "email": "not yet an email"})
    app.save_draft("identity", {"email": None, "last_name": "Lovelace"})
    assert app.answers("identity") == {"first_name": "Ada", "last_name": "Lovelace"}
    with pytest.raises(StepProblems) as refused:
        app.complete_step("identity", {"email": "ada@"}, TODAY)
    assert [p.field for p in refused.value.problems] == [
        "identity.date_of_birth",
        "identity.email",
        "identity.phone",
        "identity.address_line",
        "identity.postal_code",
        "identity.city",
        "identity.country",
    ]
    app.complete_step("identity", {k: v for k, v in IDENTITY.items() if k != "first_name"}, TODAY)
    assert app.completed["identity"]["first_name"] == "Ada"
    assert app.drafts == {}
    assert app.current == "employment"


def test_a_draft_names_only_its_steps_own_fields() -> None:
    app = started()
    with pytest.raises(StepProblems) as refused:
        app.save_draft("identity", {"salary": "1"})
    assert refused.value.problems[0].field == "identity.salary"
    with pytest.raises(NotFound):
        app.save_draft("nowhere", {"x": "1"})


def test_steps_are_completed_in_order_and_the_employer_step_skipped_when_retired() -> None:
    app = started()
    with pytest.raises(InvalidState, match="complete identity before employment"):
        app.complete_step("employment", EMPLOYED, TODAY)
    app.complete_step("identity", IDENTITY, TODAY)
    app.complete_step("employment", {**EMPLOYED, "status": "retired"}, TODAY)
    assert app.current == "loan"
    with pytest.raises(InvalidState, match="does not apply"):
        app.complete_step("employer", EMPLOYER, TODAY)
    app.complete_step("loan", LOAN, TODAY)
    app.complete_step("review", REVIEW, TODAY)
    assert app.steps_to_do == []


def test_going_back_and_changing_an_answer_brings_a_step_into_play() -> None:
    app = started()
    app.complete_step("identity", IDENTITY, TODAY)
    app.complete_step("employment", {**EMPLOYED, "status": "student"}, TODAY)
    app.complete_step("loan", LOAN, TODAY)
    app.complete_step("review", REVIEW, TODAY)
    assert app.current is None
    app.go_back("employment")
    assert app.current == "employment"
    with pytest.raises(InvalidState):
        app.go_back("review")
    app.complete_step("employment", EMPLOYED, TODAY)
    assert app.current == "employer"
    with pytest.raises(StepProblems) as refused:
        app.submit()
    assert [p.field for p in refused.value.problems] == ["employer"]
    app.complete_step("employer", EMPLOYER, TODAY)
    app.submit()
    assert app.status == "submitted"
    with pytest.raises(InvalidState, match="submitted"):
        app.save_draft("loan", {"amount": "1"})


def test_each_field_remembers_the_version_that_changed_it() -> None:
    app = started()
    app.save_draft("identity", {"first_name": "Ada"})
    seen = app.version
    app.save_draft("identity", {"city": "London"})
    assert app.changed_since(seen, "identity", ["first_name", "city"]) == ["city"]
    app.complete_step("identity", {**IDENTITY, "city": "London"}, TODAY)
    assert app.changed_since(seen, "identity", ["first_name"]) == []
    assert app.changed_since(seen, "identity", ["last_name"]) == ["last_name"]


def test_withdrawn_and_expired_applications_no_longer_change() -> None:
    app = started()
    app.withdraw()
    with pytest.raises(InvalidState, match="withdrawn"):
        app.save_draft("identity", {"first_name": "Ada"})
    idle = started()
    assert not idle.is_idle(datetime.now(UTC), timedelta(days=30))
    assert idle.is_idle(datetime.now(UTC) + timedelta(days=31), timedelta(days=30))
    idle.expire()
    assert idle.status == "expired"
    for command in (idle.submit, idle.withdraw, idle.expire):
        with pytest.raises(Expired, match="expired"):
            command()


@pytest.mark.anyio
async def test_an_application_saved_and_loaded_again_is_the_same_with_its_form(
    store: EventStore, mapper: EventMapper
) -> None:
    """The definition travels in the first event through the real codec and cipher, so the
    loaded application validates by the form it started with."""
    app = started()
    app.complete_step("identity", IDENTITY, TODAY)
    app.save_draft("employment", {"status": "employed", "monthly_income": "not yet"})
    repository = Repository(store, mapper)
    request = IdempotencyKey(app.subject_id, uuid4())
    await repository.save(app, app.subject_id, EventMeta("app", "phone"), request, b"start")
    loaded = await repository.load(app.id, Application)
    assert loaded is not None
    assert loaded.form == app.form
    assert (loaded.completed, loaded.drafts, loaded.current, loaded.changed_at) == (
        app.completed,
        app.drafts,
        "employment",
        app.changed_at,
    )
    with pytest.raises(StepProblems):
        loaded.complete_step("employment", {}, TODAY)


@pytest.mark.anyio
async def test_a_long_application_loads_from_its_snapshot_as_a_replay_gives_it(
    store: EventStore, mapper: EventMapper
) -> None:
    """Autosaved drafts make long streams: an action loads the snapshot and the events after
    it, with the times expiry reads, not the whole history."""
    app = started()
    repository = Repository(store, mapper)
    meta = EventMeta("app", "phone")
    for n in range(230):
        app.save_draft("identity", {"first_name": f"Ada {n}"})
        if n % 50 == 49 or n == 229:
            request = IdempotencyKey(app.subject_id, uuid4())
            await repository.save(app, app.subject_id, meta, request, b"draft")
    assert await store.pool.fetchval(
        "SELECT version FROM snapshots WHERE stream_id = $1", app.id
    ), "a commit past 100 events leaves a snapshot"
    loaded = await repository.load(app.id, Application)
    assert loaded is not None
    replayed = Repository(store, mapper)
    await store.pool.execute("DELETE FROM snapshots WHERE stream_id = $1", app.id)
    full = await replayed.load(app.id, Application)
    assert full is not None
    for name in ("version", "status", "drafts", "completed", "changed_at", "current", "form"):
        assert getattr(loaded, name) == getattr(full, name), name
    assert (loaded.created_on, loaded.modified_on) == (full.created_on, full.modified_on)
    assert loaded.is_idle(datetime.now(UTC) + timedelta(days=31), timedelta(days=30))


def test_a_moved_application_goes_on_at_its_step_and_the_original_refuses_all() -> None:
    original = started()
    original.complete_step("identity", IDENTITY, TODAY)
    original.save_draft("employment", {"status": "employed"})
    customer = uuid4()
    moved = Application.imported(customer, original)
    assert (moved.subject_id, moved.form, moved.current) == (customer, original.form, "employment")
    assert moved.completed == original.completed
    assert moved.answers("employment") == {"status": "employed"}
    assert moved.changed_since(0, "identity", ["first_name"]) == ["first_name"]
    original.move_to(moved.id, customer)
    assert (original.status, original.current, original.moved_to) == ("moved", None, moved.id)
    refusals: list[Callable[[], None]] = [
        lambda: original.save_draft("employment", {"status": "retired"}),
        lambda: original.withdraw(),
        lambda: original.submit(),
        lambda: original.move_to(moved.id, customer),
    ]
    for refused in refusals:
        with pytest.raises(InvalidState, match="moved"):
            refused()
    moved.complete_step("employment", EMPLOYED, TODAY)
    assert moved.current == "employer"
    replayed = None
    for event in moved.collect_events():
        replayed = event.mutate(replayed)
    assert isinstance(replayed, Application)
    assert replayed.snapshot_state() == moved.snapshot_state()
