"""The operator's form definitions: every fault of a directory listed at once, each naming its
file and field; JSON and TOML alike; several versions of one form type side by side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from continuity.form_catalog import FormCatalogError, load_forms


def a_form(version: int | str = 1, **changes: Any) -> dict[str, Any]:
    form: dict[str, Any] = {
        "type": "savings-goal",
        "version": version,
        "title": "A savings goal",
        "steps": [
            {
                "name": "goal",
                "title": "Your goal",
                "fields": [
                    {"name": "target", "label": "Target", "type": "money", "currency": "EUR"},
                    {"name": "by", "label": "By", "type": "date", "min": "today"},
                ],
            }
        ],
    }
    return {**form, **changes}


def write(directory: Path, name: str, content: dict[str, Any] | str) -> None:
    text = content if isinstance(content, str) else json.dumps(content)
    (directory / name).write_text(text, encoding="utf-8")


def test_the_bundled_forms_are_a_personal_loan_and_a_bank_account() -> None:
    catalog = load_forms()
    assert catalog.types == ["bank-account", "personal-loan"]
    loan = catalog.latest("personal-loan")
    assert loan is not None
    assert [s.name for s in loan.steps] == ["identity", "employment", "employer", "loan", "review"]


def test_every_fault_is_listed_with_its_file_and_field(tmp_path: Path) -> None:
    write(tmp_path, "a-good.json", a_form())
    write(tmp_path, "b-wrong-type.json", a_form(version="two"))
    bad_field = a_form(version=2)
    bad_field["steps"][0]["fields"][0]["type"] = "currency"
    write(tmp_path, "c-bad-field.json", bad_field)
    write(tmp_path, "d-same-again.json", a_form())
    broken = a_form(version=3)
    broken["steps"][0]["fields"][1]["min"] = "soon"
    write(tmp_path, "e-bad-bound.json", broken)
    write(tmp_path, "f-not-json.json", "{ steps: ")
    write(tmp_path, "notes.txt", "ignored: not a definition")
    with pytest.raises(FormCatalogError) as refused:
        load_forms(tmp_path)
    faults = refused.value.faults
    assert faults == [
        f"{tmp_path}/b-wrong-type.json: Expected `int`, got `str` - at `$.version`",
        f"{tmp_path}/c-bad-field.json: Invalid enum value 'currency' - at"
        " `$.steps[0].fields[0].type`",
        f"{tmp_path}/d-same-again.json: form 'savings-goal' version 1 is defined in"
        f" {tmp_path}/a-good.json already",
        f"{tmp_path}/e-bad-bound.json: steps[0].fields[1].min: must be an ISO date or today,"
        " today-18y, today+30d",
        f"{tmp_path}/f-not-json.json: not readable as JSON: JSON is malformed: object keys must"
        " be strings (byte 2)",
    ]


def test_toml_and_json_definitions_and_the_newest_version_starts_applications(
    tmp_path: Path,
) -> None:
    write(tmp_path, "goal-v1.json", a_form())
    (tmp_path / "goal-v2.toml").write_text(
        """
type = "savings-goal"
version = 2
title = "A savings goal"

[[steps]]
name = "goal"
title = "Your goal"

[[steps.fields]]
name = "target"
label = "Target"
type = "money"
currency = "EUR"
min = 100
""",
        encoding="utf-8",
    )
    catalog = load_forms(tmp_path)
    newest = catalog.latest("savings-goal")
    assert newest is not None
    assert newest.version == 2
    assert newest.steps[0].fields[0].min == 100
    first = catalog.get("savings-goal", 1)
    assert first is not None
    assert len(first.steps[0].fields) == 2


def test_a_missing_or_empty_directory_is_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(FormCatalogError, match="is not a directory of form definitions"):
        load_forms(tmp_path / "nowhere")
    with pytest.raises(FormCatalogError, match=r"holds no \*\.json or \*\.toml form definition"):
        load_forms(tmp_path)
