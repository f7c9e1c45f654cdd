"""`continuity run --workers N`: what the parent process does once, before its workers start.

Each worker is a fresh interpreter (uvicorn spawns them) that builds its own app, pool and key
vault (`api/worker.py`). What must not happen once per worker happens here first: the embedded
PostgreSQL is started (and stopped when the parent exits), the master key and JWT secret files
are created, migrations run and stale projections are rebuilt. The workers then inherit, through
the environment, the database's resolved URL (so none starts a database of its own) and the
directory where they share their metrics (`continuity/metrics.py`).

What stays per worker, by design (docs/operations.md, "Several workers"): the key cache (each
worker's vault LISTENs for erasures on its own connection), the rate limits' counts, the pool.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg

from continuity.metrics import SHARED_DIR_VARIABLE
from continuity.runtime import Runtime, resolve_database, resolve_jwt_secret, resolve_keyring
from continuity.settings import Settings
from privacy.master_key import Keyring

log = logging.getLogger("continuity.workers")

SPARE_CONNECTIONS = 10
"""Connections left for the CLI, a migration and PostgreSQL's reserved slots when checking the
workers' pools against `max_connections`."""


def metrics_root(settings: Settings) -> Path:
    """Where each multi-worker server keeps its shared metrics directory (one per run)."""
    return settings.data_dir / "metrics"


async def _prepare_database(settings: Settings, url: str, keyring: Keyring, workers: int) -> None:
    """Migrate, check the log's origin and rebuild stale projections (what `Runtime.open`
    does), then warn if the workers' pools could exceed the server's connection limit."""
    runtime = await Runtime.open(settings, url, keyring)
    try:
        limit = int(await runtime.pool.fetchval("SHOW max_connections"))
    except (OSError, asyncpg.PostgresError, ValueError):
        limit = None
    finally:
        await runtime.close()
    wanted = workers * (settings.pool_max_size + runtime.dedicated_connections)
    if limit is not None and wanted + SPARE_CONNECTIONS > limit:
        log.warning(
            "%d workers with pools of up to %d connections (and %d of their own each) may"
            " open %d connections; the database allows %d (max_connections): lower"
            " CONTINUITY_WORKERS or CONTINUITY_POOL_MAX_SIZE, or raise max_connections",
            workers,
            settings.pool_max_size,
            runtime.dedicated_connections,
            wanted,
            limit,
        )


@contextmanager
def prepared(settings: Settings, workers: int) -> Iterator[dict[str, str]]:
    """Do the once-only work above and yield the environment the workers need; on leaving
    (normally, or by SIGINT/SIGTERM turned into an exception) stop the embedded database if
    this started it, and remove the metrics directory."""
    url, server = resolve_database(settings)
    shared: Path | None = None
    try:
        keyring = resolve_keyring(settings)
        resolve_jwt_secret(settings)
        asyncio.run(_prepare_database(settings, url, keyring, workers))
        root = metrics_root(settings)
        root.mkdir(parents=True, exist_ok=True)
        shared = Path(tempfile.mkdtemp(prefix="run-", dir=root))
        yield {"CONTINUITY_DATABASE_URL": url, SHARED_DIR_VARIABLE: str(shared)}
    finally:
        if shared is not None:
            shutil.rmtree(shared, ignore_errors=True)
        if server is not None:
            server.cleanup()
