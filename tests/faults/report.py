"""The fault tests' figures, printed at the end of the run (`conftest.pytest_terminal_summary`)
so that `make test` shows them; docs/reliability.md quotes the last ones."""

from __future__ import annotations

from tests.faults.cluster import Counts, Tally

FIGURES: list[str] = []


def report(title: str, **figures: object) -> None:
    FIGURES.append(f"{title}: " + ", ".join(f"{name} {value}" for name, value in figures.items()))


def report_load(title: str, counts: Counts, tally: Tally, **more: object) -> None:
    """A load's counts against what its clients saw."""
    report(
        title,
        acknowledged=counts.acknowledged,
        stored=counts.stored,
        duplicates=counts.duplicates,
        lost=counts.lost,
        **tally.summary(),
        **more,
    )
