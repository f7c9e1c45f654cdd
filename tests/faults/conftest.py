"""Two API processes on the test database, and the fault tests' figures after the run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from tests.continuity.test_cli import drop_schema
from tests.faults.cluster import Server
from tests.faults.report import FIGURES
from tests.server import server_env


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("fault suite figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture
def servers(database_url: str, tmp_path: Path) -> Iterator[tuple[str, list[Server]]]:
    """(schema, [a, b]): two `continuity run` processes on a fresh schema of the test database."""
    schema = f"test_faults_{uuid4().hex[:12]}"
    env = server_env(database_url, schema, tmp_path / "data", log_level="WARNING")
    both = [Server(env, tmp_path, "a"), Server(env, tmp_path, "b")]
    try:
        for server in both:
            server.start()
        yield schema, both
    finally:
        for server in both:
            server.stop()
        drop_schema(database_url, schema)
