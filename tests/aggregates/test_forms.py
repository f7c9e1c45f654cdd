"""Form definitions: a definition that could not be filled in is refused with every fault named,
and a step's answers are checked against the definition with every failing field named."""

from __future__ import annotations

from datetime import date
from typing import Any

import msgspec
import pytest

from aggregates.forms import Form, FormError, Problem, check_form, check_step, skipped
from continuity.form_catalog import load_forms

TODAY = date(2026, 11, 23)


def form_of(steps: list[dict[str, Any]]) -> Form:
    return msgspec.convert({"type": "t", "version": 1, "title": "T", "steps": steps}, Form)


def faults(steps: list[dict[str, Any]]) -> list[str]:
    with pytest.raises(FormError) as refused:
        check_form(form_of(steps))
    return [f"{p.field}: {p.message}" for p in refused.value.problems]


def test_a_definition_that_cannot_be_filled_in_is_refused_naming_each_fault() -> None:
    found = faults(
        [
            {
                "name": "one",
                "title": "One",
                "fields": [
                    {"name": "age", "label": "Age", "type": "integer", "min": 10, "max": 5},
                    {"name": "age", "label": "Again", "type": "text", "pattern": "("},
                    {"name": "pick", "label": "Pick", "type": "choice"},
                    {"name": "pay", "label": "Pay", "type": "money"},
                    {"name": "born", "label": "Born", "type": "date", "min": "yesterday"},
                ],
            },
            {
                "name": "two",
                "title": "Two",
                "skip_if": {"field": "three.x", "in": ["a"]},
                "fields": [{"name": "x", "label": "X", "type": "boolean", "min_length": 2}],
            },
        ]
    )
    assert found == [
        "steps[0].fields[0].max: must not be below min",
        "steps[0].fields[1].name: field 'age' is defined twice in one",
        "steps[0].fields[1].pattern: does not compile: missing ), unterminated subpattern"
        " at position 0",
        "steps[0].fields[2].choices: a choice field lists its choices",
        "steps[0].fields[3].currency: a money field names its currency (ISO 4217)",
        "steps[0].fields[4].min: must be an ISO date or today, today-18y, today+30d",
        "steps[1].skip_if.field: 'three.x' is not a field of an earlier step",
        "steps[1].fields[0].min_length: only text, email and phone fields, 0 to 2000",
    ]


def test_a_condition_names_an_answer_its_field_can_have() -> None:
    steps: list[dict[str, Any]] = [
        {
            "name": "a",
            "title": "A",
            "fields": [
                {
                    "name": "kind",
                    "label": "Kind",
                    "type": "choice",
                    "choices": [{"value": "x", "label": "X"}],
                }
            ],
        },
        {
            "name": "b",
            "title": "B",
            "skip_if": {"field": "a.kind", "in": ["y"]},
            "fields": [{"name": "n", "label": "N", "type": "integer"}],
        },
    ]
    assert faults(steps) == ["steps[1].skip_if.in: 'y' is not an answer 'a.kind' can have"]


def loan() -> Form:
    form = load_forms().latest("personal-loan")
    assert form is not None
    return form


def test_every_failing_field_of_a_step_is_named_at_once() -> None:
    step = loan().steps[0]
    clean, problems = check_step(
        step,
        {
            "first_name": "  Ada ",
            "last_name": "",
            "date_of_birth": "2010-01-01",
            "email": "ada@",
            "phone": "call me",
            "postal_code": "x",
            "city": "London",
            "country": "UK",
            "nickname": "A",
        },
        TODAY,
    )
    assert {p.field: p.message for p in problems} == {
        "identity.nickname": "is not a field of this step",
        "identity.last_name": "is required",
        "identity.date_of_birth": "must be on or before 2008-11-23",
        "identity.email": "is not an email address",
        "identity.phone": "is not a phone number",
        "identity.address_line": "is required",
        "identity.postal_code": "does not have the expected format",
        "identity.country": "is not a choice",
    }
    assert clean == {"first_name": "Ada", "city": "London"}


def test_answers_are_normalised_and_bounded_by_kind() -> None:
    form = loan()
    employment = form.steps[1]
    clean, problems = check_step(
        employment,
        {"status": "employed", "monthly_income": "2500.5", "monthly_expenses": "900"},
        TODAY,
    )
    assert problems == [Problem("employment.dependants", "is required")]
    assert clean["monthly_income"] == "2500.50"
    amount = form.steps[3]
    _, problems = check_step(
        amount,
        {"amount": "80000", "term_months": 36, "purpose": "car"},
        TODAY,
    )
    assert {p.field: p.message for p in problems} == {
        "loan.amount": "must be at most 75000",
        "loan.term_months": "must be a string",
    }
    _, problems = check_step(
        amount, {"amount": "1000.001", "term_months": "36", "purpose": "car"}, TODAY
    )
    assert [p.field for p in problems] == ["loan.amount"]
    review = form.steps[4]
    _, problems = check_step(review, {"credit_check": False, "accurate": True}, TODAY)
    assert {p.field: p.message for p in problems} == {
        "review.credit_check": "must be given to go on"
    }


def test_a_step_is_skipped_by_an_earlier_answer() -> None:
    employer = loan().steps[2]
    assert skipped(employer, {"employment": {"status": "retired"}})
    assert not skipped(employer, {"employment": {"status": "employed"}})
    assert not skipped(employer, {})
