"""A small async projection for the runner's tests: how many events each stream has, in
`stream_counts`. Runnable as a process (`python -m tests.continuity.counting URL SCHEMA KEY`)
so that a test can kill it mid-batch."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from dataclasses import dataclass

from continuity.db import Conn, Queryable, close_pool, create_pool
from continuity.mapper import EventMapper
from continuity.projection import Mode, Placement
from continuity.runner import ProjectionRunner
from continuity.store import EventStore
from privacy.master_key import Keyring
from privacy.vault import KeyVault
from projections.envelope import Envelope
from projections.tables import Table

TABLE = Table(
    "stream_counts",
    (
        "CREATE TABLE {table} (stream_id uuid PRIMARY KEY, subject_id uuid NOT NULL,"
        " events int NOT NULL)",
        "CREATE INDEX ON {table} (subject_id)",
    ),
)


async def create_table(conn: Queryable) -> None:
    for statement in TABLE.create("stream_counts"):
        await conn.execute(statement)


@dataclass(frozen=True)
class Counting:
    """The projection; `pause` seconds inside each page's transaction, to be caught mid-batch."""

    pause: float = 0.0
    name: str = "stream_counts"
    topics: tuple[str, ...] = ()
    tables: tuple[Table, ...] = (TABLE,)
    mode: Mode = "async"
    version: int = 1

    async def handle(self, conn: Conn, placement: Placement, envelopes: list[Envelope]) -> None:
        table = placement["stream_counts"]
        counts = Counter((e.stream_id, e.subject_id) for e in envelopes)
        await conn.executemany(
            f"INSERT INTO {table} (stream_id, subject_id, events) VALUES ($1, $2, $3)"
            f" ON CONFLICT (stream_id) DO UPDATE SET events = {table}.events + excluded.events",
            [(stream, subject, n) for (stream, subject), n in counts.items()],
        )
        if self.pause:
            await asyncio.sleep(self.pause)


def counting(pause: float = 0.0) -> Counting:
    return Counting(pause)


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
