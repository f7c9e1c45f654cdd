"""A small async projection for the runner's tests: how many events each stream has, in
`stream_counts`. Runnable as a process (`python -m tests.continuity.counting URL SCHEMA KEY`)
so that a test can kill it mid-batch."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter

from continuity.db import Conn, close_pool, create_pool
from continuity.mapper import EventMapper
from continuity.runner import AsyncProjection, ProjectionRunner
from continuity.store import EventStore
from privacy.master_key import Keyring
from privacy.vault import KeyVault
from projections.envelope import Envelope

TABLE = "CREATE TABLE IF NOT EXISTS stream_counts (stream_id uuid PRIMARY KEY, events int NOT NULL)"


def counting(pause: float = 0.0) -> AsyncProjection:
    """The projection; `pause` seconds inside each page's transaction, to be caught mid-batch."""

    async def handle(conn: Conn, envelopes: list[Envelope]) -> None:
        counts = Counter(e.stream_id for e in envelopes)
        await conn.executemany(
            "INSERT INTO stream_counts (stream_id, events) VALUES ($1, $2) ON CONFLICT (stream_id)"
            " DO UPDATE SET events = stream_counts.events + excluded.events",
            list(counts.items()),
        )
        if pause:
            await asyncio.sleep(pause)

    return AsyncProjection("stream_counts", (), handle)


async def _main(url: str, schema: str, key: str) -> None:
    pool = await create_pool(url, schema, min_size=2, max_size=4)
    vault = KeyVault(pool, schema, Keyring.from_text(key))
    await vault.start()
    runner = ProjectionRunner(
        EventStore(pool, schema), EventMapper(vault), counting(pause=0.05), page_size=20
    )
    try:
        await runner.run(asyncio.Event())
    finally:
        await vault.close()
        await close_pool(pool)


if __name__ == "__main__":
    asyncio.run(_main(*sys.argv[1:4]))
