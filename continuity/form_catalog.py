"""The form definitions an operator supplies: every `*.json` and `*.toml` file of a directory
(`CONTINUITY_FORMS_DIR`), or the two bundled ones (a personal loan, a bank account opening).

Loaded once at start and checked in full: a file that does not parse, a field of the wrong type,
a definition `aggregates.forms.check_form` refuses, or two files defining one form type at one
version stop the start-up with every fault listed, each naming its file and field. A directory
may hold several versions of a form type: new applications start on the highest, and each
application keeps the definition it started with (it is recorded in the application's first
event), so retiring a version's file never strands an application.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import msgspec

from aggregates.forms import Form, FormError, check_form
from continuity.settings import SettingsError

BUNDLED = "forms"
"""The bundled definitions' directory in the `continuity` package."""
SUFFIXES = (".json", ".toml")


class FormCatalogError(SettingsError):
    """The definitions cannot be used; the message lists every fault, one per line."""

    def __init__(self, faults: list[str]) -> None:
        super().__init__("\n".join(faults))
        self.faults = faults


@dataclass(frozen=True)
class FormCatalog:
    """Form definitions by type and version."""

    forms: dict[str, dict[int, Form]]

    def latest(self, form_type: str) -> Form | None:
        versions = self.forms.get(form_type)
        return versions[max(versions)] if versions else None

    def get(self, form_type: str, version: int) -> Form | None:
        return self.forms.get(form_type, {}).get(version)

    @property
    def types(self) -> list[str]:
        return sorted(self.forms)


def load_forms(directory: Path | None = None) -> FormCatalog:
    """The definitions in `directory`, or the bundled ones; FormCatalogError otherwise."""
    if directory is None:
        bundled = resources.files("continuity").joinpath(BUNDLED)
        files = [(f"{BUNDLED}/{entry.name}", entry.read_bytes()) for entry in _files(bundled)]
    else:
        if not directory.is_dir():
            raise FormCatalogError(
                [f"CONTINUITY_FORMS_DIR: {directory} is not a directory of form definitions"]
            )
        files = [(str(directory / entry.name), entry.read_bytes()) for entry in _files(directory)]
    if not files:
        raise FormCatalogError(
            [f"CONTINUITY_FORMS_DIR: {directory} holds no *.json or *.toml form definition"]
        )
    faults: list[str] = []
    forms: dict[str, dict[int, Form]] = {}
    origin: dict[tuple[str, int], str] = {}
    for name, data in files:
        form = _parse(name, data, faults)
        if form is None:
            continue
        key = (form.type, form.version)
        if key in origin:
            faults.append(
                f"{name}: form {form.type!r} version {form.version} is defined in"
                f" {origin[key]} already"
            )
            continue
        origin[key] = name
        forms.setdefault(form.type, {})[form.version] = form
    if faults:
        raise FormCatalogError(faults)
    return FormCatalog(forms)


def _files(directory: Traversable) -> list[Traversable]:
    entries = [e for e in directory.iterdir() if e.is_file() and e.name.endswith(SUFFIXES)]
    return sorted(entries, key=lambda e: e.name)


def _parse(name: str, data: bytes, faults: list[str]) -> Form | None:
    try:
        if name.endswith(".toml"):
            form = msgspec.convert(tomllib.loads(data.decode("utf-8")), Form)
        else:
            form = msgspec.json.decode(data, type=Form)
        return check_form(form)
    except msgspec.ValidationError as exc:  # a DecodeError too: the file read, but not as a form
        faults.append(f"{name}: {exc}")
    except (msgspec.DecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        faults.append(f"{name}: not readable as {name.rsplit('.', 1)[-1].upper()}: {exc}")
    except FormError as exc:
        faults.extend(f"{name}: {p.field}: {p.message}" for p in exc.problems)
    return None
