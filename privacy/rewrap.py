"""Re-wrapping stored keys under the current master key: one loop for every table of keys."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import asyncpg

from privacy.master_key import KeyWrapper


async def rewrap_table(
    pool: asyncpg.Pool,
    wrapper: KeyWrapper,
    table: str,
    key_columns: Sequence[str],
    context: Callable[[asyncpg.Record], bytes],
    batch: int,
) -> int:
    """Re-wrap every row of `table` (its primary key is `key_columns`) whose key is not under
    the current master key, `batch` rows per transaction; `context` gives a row's wrap
    associated data. Returns how many were re-wrapped; safe to run again after an interruption.
    `table` and `key_columns` are the caller's constants, never input."""
    match = " AND ".join(f"{column} = ${i}" for i, column in enumerate(key_columns, start=1))
    after = len(key_columns)
    total = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"SELECT * FROM {table} WHERE kek_id <> $1 LIMIT $2 FOR UPDATE SKIP LOCKED",
                wrapper.current_id,
                batch,
            )
            for row in rows:
                wrap_context = context(row)
                secret = wrapper.unwrap(row["kek_id"], row["wrapped_key"], wrap_context)
                kek_id, wrapped = wrapper.wrap(secret, wrap_context)
                await conn.execute(
                    f"UPDATE {table} SET kek_id = ${after + 1}, wrapped_key = ${after + 2}"
                    f" WHERE {match}",
                    *(row[column] for column in key_columns),
                    kek_id,
                    wrapped,
                )
        total += len(rows)
        if len(rows) < batch:
            return total
