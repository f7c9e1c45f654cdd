"""Print the fault tests' figures after the run."""

from __future__ import annotations

import pytest

from tests.faults.report import FIGURES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("fault suite figures")
        for line in FIGURES:
            terminalreporter.write_line(line)
