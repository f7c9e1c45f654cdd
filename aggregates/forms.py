"""Form definitions: the steps of a multi-step application and the fields each step asks for.

A definition is data the operator supplies (see `continuity.form_catalog`); `check_form` refuses
one that could not be filled in (a duplicate name, a bound of the wrong kind, a pattern that does
not compile, a condition on a field that comes later), naming the field at fault by its path.
`check_step` validates one step's answers against it and names every failing field at once.

Answers are JSON scalars: text, email, phone, date (ISO `YYYY-MM-DD`), choice and money (a
decimal string, so that "1200.50" never passes through a float) are strings; integer an integer;
boolean and consent `true` or `false`. A consent that is required must be given (`true`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from typing import Literal, Protocol

import msgspec

from aggregates import money
from aggregates.errors import InvalidValue

FieldType = Literal[
    "text", "email", "phone", "date", "integer", "money", "choice", "boolean", "consent"
]
Answer = str | int | bool | None
"""One field's value as the client sent it (see the module's docstring for which type)."""

NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
FORM_TYPE = re.compile(r"[a-z][a-z0-9-]{0,62}")
MAX_TEXT = 2_000
"""The longest answer a text field takes unless its definition says less."""
MAX_STEPS = 50
MAX_FIELDS = 100
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}")
_PHONE = re.compile(r"\+?[0-9][0-9 ().-]{5,23}")
_RELATIVE = re.compile(r"today(?:([+-])(\d{1,3})([dy]))?")

_Fault = Callable[[str, str], None]


class Choice(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    value: str
    label: str


class Field(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One question. `min`/`max` bound an integer or money amount (numbers), or a date (an ISO
    date, or `today`, `today-18y`, `today+30d`: relative to the day of the answer);
    `min_length`/`max_length`/`pattern` bound text, email and phone answers."""

    name: str
    label: str
    type: FieldType
    required: bool = True
    help: str | None = None
    min: int | str | None = None
    max: int | str | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    choices: list[Choice] | None = None
    currency: str | None = None
    """A money field's currency (ISO 4217): its answers are amounts in it."""


class Condition(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Skip a step when the answer to an earlier step's field (`step.field`) is one of `in_`."""

    field: str
    in_: list[Answer] = msgspec.field(name="in")


class Step(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    name: str
    title: str
    fields: list[Field]
    skip_if: Condition | None = None


class Form(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A form type at one version. An application keeps the definition it started with."""

    type: str
    version: int
    title: str
    steps: list[Step]

    def step(self, name: str) -> Step | None:
        return next((s for s in self.steps if s.name == name), None)

    def index(self, name: str) -> int:
        return next((i for i, s in enumerate(self.steps) if s.name == name), -1)


class Problem(msgspec.Struct, frozen=True, gc=False):
    """One field's answer refused: `field` is `step.field` or a path in a definition."""

    field: str
    message: str


class FormError(ValueError):
    """A form definition that cannot be used; `problems` names every fault."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))
        self.problems = problems


def check_form(form: Form) -> Form:
    """`form` if it can be filled in; FormError naming every fault otherwise."""
    problems: list[Problem] = []

    def fault(path: str, message: str) -> None:
        problems.append(Problem(path, message))

    if not FORM_TYPE.fullmatch(form.type):
        fault("type", "must be lowercase letters, digits and dashes, starting with a letter")
    if form.version < 1:
        fault("version", "must be a positive integer")
    if not form.title.strip():
        fault("title", "must not be empty")
    if not 0 < len(form.steps) <= MAX_STEPS:
        fault("steps", f"a form has 1 to {MAX_STEPS} steps")
    earlier: dict[str, Field] = {}
    steps_seen: set[str] = set()
    for i, step in enumerate(form.steps):
        at = f"steps[{i}]"
        if not NAME.fullmatch(step.name):
            fault(f"{at}.name", "must be lowercase letters, digits and _, starting with a letter")
        if step.name in steps_seen:
            fault(f"{at}.name", f"step {step.name!r} is defined twice")
        steps_seen.add(step.name)
        if not 0 < len(step.fields) <= MAX_FIELDS:
            fault(f"{at}.fields", f"a step has 1 to {MAX_FIELDS} fields")
        if step.skip_if is not None:
            _check_condition(step.skip_if, earlier, f"{at}.skip_if", fault)
        names: set[str] = set()
        for j, spec in enumerate(step.fields):
            where = f"{at}.fields[{j}]"
            if not NAME.fullmatch(spec.name):
                fault(f"{where}.name", "must be lowercase letters, digits and _")
            if spec.name in names:
                fault(f"{where}.name", f"field {spec.name!r} is defined twice in {step.name}")
            names.add(spec.name)
            _check_field(spec, where, fault)
        earlier.update({f"{step.name}.{spec.name}": spec for spec in step.fields})
    if problems:
        raise FormError(problems)
    return form


def _check_condition(
    condition: Condition, earlier: Mapping[str, Field], at: str, fault: _Fault
) -> None:
    spec = earlier.get(condition.field)
    if spec is None:
        fault(f"{at}.field", f"{condition.field!r} is not a field of an earlier step")
        return
    if not condition.in_:
        fault(f"{at}.in", "must list at least one answer")
    for value in condition.in_:
        if _answer_problem(spec, value, date.today()) is not None and value is not None:
            fault(f"{at}.in", f"{value!r} is not an answer {condition.field!r} can have")


def _check_field(spec: Field, at: str, fault: _Fault) -> None:
    if not spec.label.strip():
        fault(f"{at}.label", "must not be empty")
    numeric = spec.type in ("integer", "money")
    textual = spec.type in ("text", "email", "phone")
    for bound in ("min", "max"):
        value = getattr(spec, bound)
        if value is None:
            continue
        if numeric and not (isinstance(value, int) or _decimal(value) is not None):
            fault(f"{at}.{bound}", "must be a number for an integer or money field")
        elif spec.type == "date" and (not isinstance(value, str) or _date_bound(value) is None):
            fault(f"{at}.{bound}", "must be an ISO date or today, today-18y, today+30d")
        elif not numeric and spec.type != "date":
            fault(f"{at}.{bound}", f"a {spec.type} field takes no {bound}")
    if numeric and spec.min is not None and spec.max is not None:
        low, high = _decimal(spec.min), _decimal(spec.max)
        if low is not None and high is not None and low > high:
            fault(f"{at}.max", "must not be below min")
    for bound in ("min_length", "max_length"):
        value = getattr(spec, bound)
        if value is not None and (not textual or not 0 <= value <= MAX_TEXT):
            fault(f"{at}.{bound}", f"only text, email and phone fields, 0 to {MAX_TEXT}")
    if spec.pattern is not None:
        if not textual:
            fault(f"{at}.pattern", "only text, email and phone fields take a pattern")
        else:
            try:
                re.compile(spec.pattern)
            except re.error as exc:
                fault(f"{at}.pattern", f"does not compile: {exc}")
    if spec.type == "choice":
        values = [c.value for c in spec.choices or []]
        if not values:
            fault(f"{at}.choices", "a choice field lists its choices")
        elif len(set(values)) != len(values):
            fault(f"{at}.choices", "a choice is listed twice")
    elif spec.choices is not None:
        fault(f"{at}.choices", "only a choice field lists choices")
    if spec.type == "money":
        if spec.currency is None or spec.currency not in money.MINOR_UNITS:
            fault(f"{at}.currency", "a money field names its currency (ISO 4217)")
    elif spec.currency is not None:
        fault(f"{at}.currency", "only a money field has a currency")


class Outlined(Protocol):
    """What deciding the way through a form needs of a step: a `Step`, or a view's outline."""

    @property
    def name(self) -> str: ...

    @property
    def skip_if(self) -> Condition | None: ...


def next_step(
    steps: Sequence[Outlined], answers: Mapping[str, Mapping[str, Answer]], after: str
) -> str | None:
    """The first step after `after` that applies (None: the last one is done)."""
    names = [s.name for s in steps]
    later = steps[names.index(after) + 1 :] if after in names else steps
    return next((s.name for s in later if not skipped(s, answers)), None)


def skipped(step: Outlined, answers: Mapping[str, Mapping[str, Answer]]) -> bool:
    """Whether `step` is skipped, given the completed steps' answers by step name."""
    condition = step.skip_if
    if condition is None:
        return False
    step_name, _, field_name = condition.field.partition(".")
    answer = answers.get(step_name, {}).get(field_name)
    return answer in condition.in_


def check_step(
    step: Step, values: Mapping[str, Answer], today: date
) -> tuple[dict[str, Answer], list[Problem]]:
    """The step's answers normalised (money at its minor unit, text trimmed), and a problem
    for every field that is missing, unknown or fails its definition."""
    problems = [
        Problem(f"{step.name}.{name}", "is not a field of this step")
        for name in values
        if all(spec.name != name for spec in step.fields)
    ]
    clean: dict[str, Answer] = {}
    for spec in step.fields:
        value = values.get(spec.name)
        if isinstance(value, str) and spec.type != "money":
            value = value.strip()
        if value is None or value == "":
            if spec.required:
                problems.append(Problem(f"{step.name}.{spec.name}", "is required"))
            continue
        problem = _answer_problem(spec, value, today)
        if problem is not None:
            problems.append(Problem(f"{step.name}.{spec.name}", problem))
            continue
        if spec.type == "consent" and spec.required and value is not True:
            problems.append(Problem(f"{step.name}.{spec.name}", "must be given to go on"))
            continue
        clean[spec.name] = _normalised(spec, value)
    return clean, problems


def unknown_fields(step: Step, values: Mapping[str, Answer]) -> list[Problem]:
    """Drafts are saved unvalidated, but only for the step's own fields."""
    return [
        Problem(f"{step.name}.{name}", "is not a field of this step")
        for name in values
        if all(spec.name != name for spec in step.fields)
    ]


def _answer_problem(spec: Field, value: Answer, today: date) -> str | None:
    kind = spec.type
    if kind in ("boolean", "consent"):
        return None if isinstance(value, bool) else "must be true or false"
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            return "must be a whole number"
        return _range_problem(spec, Decimal(value))
    if not isinstance(value, str):
        return "must be a string"
    if len(value) > (spec.max_length or MAX_TEXT):
        return f"must be at most {spec.max_length or MAX_TEXT} characters"
    if kind == "money":
        amount = _decimal(value)
        if amount is None:
            return 'must be an amount such as "1250.00"'
        try:
            money.check_amount(amount, spec.currency or "", "the amount")
        except InvalidValue as exc:
            return str(exc)
        return _range_problem(spec, amount)
    if kind == "choice":
        return None if any(c.value == value for c in spec.choices or []) else "is not a choice"
    if kind == "date":
        return _date_problem(spec, value, today)
    if spec.min_length is not None and len(value) < spec.min_length:
        return f"must be at least {spec.min_length} characters"
    if kind == "email" and not _EMAIL.fullmatch(value):
        return "is not an email address"
    if kind == "phone" and not _PHONE.fullmatch(value):
        return "is not a phone number"
    if spec.pattern is not None and not re.fullmatch(spec.pattern, value):
        return "does not have the expected format"
    return None


def _range_problem(spec: Field, amount: Decimal) -> str | None:
    low = None if spec.min is None else _decimal(spec.min)
    high = None if spec.max is None else _decimal(spec.max)
    if low is not None and amount < low:
        return f"must be at least {spec.min}"
    if high is not None and amount > high:
        return f"must be at most {spec.max}"
    return None


def _date_problem(spec: Field, value: str, today: date) -> str | None:
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return "must be a date (YYYY-MM-DD)"
    if len(value) != 10:
        return "must be a date (YYYY-MM-DD)"
    low = None if not isinstance(spec.min, str) else _date_bound(spec.min, today)
    high = None if not isinstance(spec.max, str) else _date_bound(spec.max, today)
    if low is not None and day < low:
        return f"must be on or after {low.isoformat()}"
    if high is not None and day > high:
        return f"must be on or before {high.isoformat()}"
    return None


def _date_bound(text: str, today: date | None = None) -> date | None:
    """An ISO date, or `today` moved by days or years (a 29 February lands on the 28th)."""
    today = today or date.today()
    match = _RELATIVE.fullmatch(text)
    if match is None:
        try:
            return date.fromisoformat(text) if len(text) == 10 else None
        except ValueError:
            return None
    sign, amount, unit = match.groups()
    if sign is None:
        return today
    steps = int(amount) * (1 if sign == "+" else -1)
    if unit == "d":
        return today + timedelta(days=steps)
    year = today.year + steps
    return today.replace(year=year, day=min(today.day, 28 if today.month == 2 else today.day))


def _decimal(value: int | str) -> Decimal | None:
    try:
        amount = Decimal(value)
    except (InvalidOperation, ValueError, TypeError):
        return None
    return amount if amount.is_finite() else None


def _normalised(spec: Field, value: Answer) -> Answer:
    if spec.type == "money" and isinstance(value, str):
        return str(money.check_amount(Decimal(value), spec.currency or "", "the amount"))
    return value
