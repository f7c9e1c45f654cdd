"""Which PostgreSQL cluster the log's transaction ids come from, and the repair after a restore.

Readers take only rows whose `tx_id` is below the oldest transaction in flight. A logical
restore (`pg_dump` into another cluster) brings `tx_id` values from the old cluster, which may
be ahead of the new one's counter: those rows would stay hidden while newer ones are read, and
a subscriber that moved on would never see them. So the log records the identity of the cluster
whose ids it holds; when the identity changes, the server refuses to serve until no row is from
that cluster's future, and `repair` gives such rows the id of the repairing transaction.
"""

from __future__ import annotations

from continuity.db import Conn
from continuity.errors import ContinuityError

# Rows written by transactions this cluster has not started yet.
_AHEAD = "tx_id >= pg_snapshot_xmax(pg_current_snapshot())"


class LogFromAnotherCluster(ContinuityError):
    """The log holds transaction ids ahead of this cluster's: it was restored from a dump."""

    def __init__(self, rows: int) -> None:
        super().__init__(
            f"the event log holds {rows} events whose transaction ids are ahead of this"
            " PostgreSQL cluster's (was it restored from a dump into a new cluster?)."
            " Subscribers would skip them. Stop every server, run `continuity log repair`"
            " once, then start again (docs/operations.md, 'Restoring from a dump')."
        )
        self.rows = rows


async def rows_ahead(conn: Conn) -> int:
    """How many events carry a transaction id this cluster has not reached (a full scan)."""
    ahead: int = await conn.fetchval(f"SELECT count(*) FROM events WHERE {_AHEAD}")
    return ahead


async def check(conn: Conn) -> None:
    """Refuse a log from another cluster's future; record this cluster once it is fine.

    Only a change of cluster costs a scan of the log: on the cluster that wrote it, every
    id is in the past by construction."""
    here: int = await conn.fetchval("SELECT system_identifier FROM pg_control_system()")
    recorded = await conn.fetchval("SELECT system_identifier FROM log_origin")
    if recorded == here:
        return
    ahead = await rows_ahead(conn)
    if ahead:
        raise LogFromAnotherCluster(ahead)
    await _record(conn, here)


async def repair(conn: Conn) -> int:
    """Give every event from the future the id of this transaction, then record this cluster.

    The log refuses UPDATE, so this disables that trigger for its own transaction, which
    needs the table's owner (the role that ran the migrations). Only `tx_id` changes: it
    orders nothing once a row is committed, and every restored row is. Appends wait meanwhile.
    Returns how many rows were repaired."""
    async with conn.transaction():
        await conn.execute("LOCK TABLE events IN EXCLUSIVE MODE")
        await conn.execute("ALTER TABLE events DISABLE TRIGGER events_no_update_delete")
        status = await conn.execute(
            f"UPDATE events SET tx_id = pg_current_xact_id() WHERE {_AHEAD}"
        )
        await conn.execute("ALTER TABLE events ENABLE TRIGGER events_no_update_delete")
        await _record(
            conn, await conn.fetchval("SELECT system_identifier FROM pg_control_system()")
        )
    return int(status.split()[-1])


async def _record(conn: Conn, system_identifier: int) -> None:
    await conn.execute(
        "INSERT INTO log_origin (system_identifier) VALUES ($1) ON CONFLICT (only_row)"
        " DO UPDATE SET system_identifier = excluded.system_identifier, checked_at = now()",
        system_identifier,
    )
