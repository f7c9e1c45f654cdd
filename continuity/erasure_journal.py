"""The erasure journal, kept twice: in the `erasure_journal` table (written in the erasure's
transaction) and in a file the operator keeps apart from the database's backups (one JSON line
per entry, appended after the commit and fsync'd). After a restore, `reapply` reads both,
verifies them (`privacy.journal`), and destroys again whatever of a journaled subject came back.

A restore is recognised two ways at start (`check`): the schema now lives in another database
or schema than the one recorded in `database_identity` (`pg_restore` always creates new ones),
or the file holds entries the table lacks (a physical restore to a point before an erasure
keeps the identity, but not the table's last rows). Either way the server refuses to start
until `continuity erasures reapply` has run.

If the file cannot be written, the erasure stands (it is committed) and the failure is logged
as an error; the next erasure, the next start and `continuity erasures export` catch the file
up, and `continuity erasures status` says how far behind it is.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID

import asyncpg
import msgspec

from continuity.catalog import forget
from continuity.db import Conn, Queryable
from continuity.devices import forget_devices
from continuity.errors import ContinuityError
from continuity.handoff import forget_codes
from continuity.identifiers import suppress
from continuity.settings import Settings
from privacy.journal import (
    GENESIS,
    JOURNAL_KEY,
    JournalEntry,
    JournalInvalid,
    JournalRef,
    make_entry,
    verify_chain,
)
from privacy.master_key import Signer, signing_key_id
from privacy.system_keys import SIGNING_KEY

log = logging.getLogger("continuity.erasure_journal")

_JOURNAL_LOCK = 0x6A726E6C  # "jrnl": one writer of the chain at a time
_COLUMNS = "sequence, subject_id, erased_at, key_versions, previous, key_id, signature, hash"
_TAIL = 64 * 1024
"""Bytes read from the end of the file to find its last entry (one is about 400)."""


def journal_file(settings: Settings) -> Path:
    """CONTINUITY_ERASURE_JOURNAL, else a file per schema under the data directory, beside the
    embedded database (one per schema, so schemas sharing a data directory never mix)."""
    return settings.erasure_journal or (
        settings.data_dir / f"erasure-journal.{settings.database_schema}.jsonl"
    )


class ErasuresNotReapplied(ContinuityError):
    """The database was restored from a backup: erasures made since may have come back."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"{reason}. Subjects erased after the backup was taken may be readable again. Stop"
            " every server, run `continuity erasures reapply` once, then start again"
            " (docs/operations.md, 'Restoring from a backup')."
        )
        self.reason = reason


class JournalFileError(ContinuityError):
    """The journal file cannot be read or does not hold journal entries."""


# The table


def _entry(row: asyncpg.Record) -> JournalEntry:
    return JournalEntry(
        row["sequence"],
        row["subject_id"],
        row["erased_at"],
        list(row["key_versions"]),
        row["previous"],
        row["key_id"],
        row["signature"],
        row["hash"],
    )


async def table_entries(db: Queryable, after: int = 0) -> list[JournalEntry]:
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM erasure_journal WHERE sequence > $1 ORDER BY sequence", after
    )
    return [_entry(row) for row in rows]


async def _table_head(db: Queryable) -> JournalEntry | None:
    row = await db.fetchrow(
        f"SELECT {_COLUMNS} FROM erasure_journal ORDER BY sequence DESC LIMIT 1"
    )
    return None if row is None else _entry(row)


async def _insert(conn: Conn, entry: JournalEntry) -> None:
    await conn.execute(
        f"INSERT INTO erasure_journal ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        entry.sequence,
        entry.subject_id,
        entry.erased_at,
        entry.key_versions,
        entry.previous,
        entry.key_id,
        entry.signature,
        entry.hash,
    )


async def journal_erasures(
    conn: Conn, signer: Signer, subject_ids: list[UUID] | None
) -> list[JournalRef]:
    """Journal each tombstone among `subject_ids` (every one if None) that has no entry yet,
    inside the caller's transaction (so the entry commits with the erasure, or neither does);
    returns the entries of `subject_ids`, new or earlier, in that order."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _JOURNAL_LOCK)
    unjournaled = await conn.fetch(
        "SELECT t.subject_id, t.erased_at, t.key_versions FROM erased_subjects t"
        " WHERE ($1::uuid[] IS NULL OR t.subject_id = ANY($1::uuid[]))"
        " AND NOT EXISTS (SELECT FROM erasure_journal j WHERE j.subject_id = t.subject_id)"
        " ORDER BY array_position($1::uuid[], t.subject_id), t.erased_at, t.subject_id",
        subject_ids,
    )
    head = await _table_head(conn)
    sequence, previous = (0, GENESIS) if head is None else (head.sequence, head.hash)
    for row in unjournaled:
        sequence += 1
        entry = make_entry(
            signer,
            sequence,
            row["subject_id"],
            row["erased_at"],
            list(row["key_versions"]),
            previous,
        )
        await _insert(conn, entry)
        previous = entry.hash
    if subject_ids is None:
        return []
    rows = await conn.fetch(
        "SELECT subject_id, sequence, hash FROM erasure_journal WHERE subject_id = ANY($1)",
        subject_ids,
    )
    found = {row["subject_id"]: JournalRef(*row) for row in rows}
    return [found[s] for s in subject_ids if s in found]


async def journal_keys(db: Queryable) -> dict[str, bytes]:
    """The journal's public keys this database holds, by key id."""
    rows = await db.fetch(
        "SELECT public_key FROM system_keys WHERE kind = $1 AND name = $2",
        SIGNING_KEY,
        JOURNAL_KEY,
    )
    return {signing_key_id(row[0]): bytes(row[0]) for row in rows}


# The file


def _decode(line: bytes, number: int, path: Path) -> JournalEntry:
    try:
        return msgspec.json.decode(line, type=JournalEntry)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise JournalFileError(f"{path}, line {number}: not a journal entry ({exc})") from None


def _complete_lines(data: bytes) -> list[bytes]:
    """The newline-terminated lines: a last line without one was torn by a crash mid-append
    (the table has that entry; the next append writes it again)."""
    return [line for line in data.split(b"\n")[:-1] if line.strip()]


def read_file(path: Path) -> list[JournalEntry]:
    """Every entry in the file, in file order; [] if there is no file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise JournalFileError(f"{path} cannot be read: {exc}") from None
    return [_decode(line, n, path) for n, line in enumerate(_complete_lines(data), start=1)]


def _last(handle: int, path: Path) -> tuple[JournalEntry | None, int]:
    """The file's last complete entry and where the complete lines end."""
    size = os.fstat(handle).st_size
    start = max(0, size - _TAIL)
    data = os.pread(handle, size - start, start)
    end = data.rfind(b"\n")
    if end < 0:
        if start > 0:
            raise JournalFileError(f"{path}: its last {_TAIL} bytes hold no complete entry")
        return None, 0
    lines = _complete_lines(data[: end + 1])
    last = _decode(lines[-1], 0, path) if lines else None
    return last, start + end + 1


def last_in_file(path: Path) -> JournalEntry | None:
    """The file's last entry without reading the whole file; None if it has none."""
    try:
        handle = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise JournalFileError(f"{path} cannot be read: {exc}") from None
    try:
        return _last(handle, path)[0]
    except OSError as exc:
        raise JournalFileError(f"{path} cannot be read: {exc}") from None
    finally:
        os.close(handle)


def _line(entry: JournalEntry) -> bytes:
    return msgspec.json.encode(entry, order="sorted") + b"\n"


def _fsync_dir(path: Path) -> None:
    handle = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


@contextmanager
def _locked(path: Path) -> Iterator[int]:
    """The file open and exclusively locked (created if missing). A writer that waited while
    `rewrite_file` renamed a new file over it locks that new file instead."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        created = not path.exists()
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                current = os.stat(path).st_ino == os.fstat(handle).st_ino
            except FileNotFoundError:
                current = False  # renamed away meanwhile: open the new one
            if current:
                if created:
                    _fsync_dir(path)
                yield handle
                return
        finally:
            os.close(handle)


def _write_all(handle: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(handle, view) :]


def append_to_file(path: Path, entries: list[JournalEntry]) -> int:
    """Append those of `entries` (in order, contiguous) that come after the file's last entry,
    under an exclusive lock (several processes may append), then fsync; returns how many."""
    with _locked(path) as handle:
        last, end = _last(handle, path)
        os.ftruncate(handle, end)  # a torn last line goes; its entry is written again below
        after = 0 if last is None else last.sequence
        fresh = [e for e in entries if e.sequence > after]
        if fresh and fresh[0].sequence != after + 1:
            raise JournalFileError(
                f"{path} ends at entry {after}; entries from {fresh[0].sequence} cannot follow"
            )
        os.lseek(handle, end, os.SEEK_SET)
        _write_all(handle, b"".join(_line(e) for e in fresh))
        os.fsync(handle)
    return len(fresh)


def rewrite_file(path: Path, entries: Iterable[JournalEntry]) -> int:
    """Replace the file with `entries`, atomically (a new file renamed over it), holding the
    old file's lock so that no append is lost in between."""
    with _locked(path):
        temporary = path.with_name(path.name + ".new")
        written = 0
        with open(temporary, "wb") as handle:
            for entry in entries:
                handle.write(_line(entry))
                written += 1
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o640)
        os.replace(temporary, path)
        _fsync_dir(path)
    return written


@dataclass(frozen=True)
class FileState:
    table_head: int
    file_head: int
    diverged_at: int | None
    """The first entry where the file and the table disagree, if they do."""

    @property
    def behind(self) -> int:
        return max(0, self.table_head - self.file_head)

    @property
    def ahead(self) -> int:
        return max(0, self.file_head - self.table_head)


async def file_state(db: Queryable, path: Path) -> FileState:
    """Compare the file's last entry with the table (reads only the file's tail)."""
    last = await asyncio.to_thread(last_in_file, path)
    head = await _table_head(db)
    table_head = 0 if head is None else head.sequence
    if last is None:
        return FileState(table_head, 0, None)
    mine = await db.fetchval("SELECT hash FROM erasure_journal WHERE sequence = $1", last.sequence)
    diverged = last.sequence if mine is not None and mine != last.hash else None
    return FileState(table_head, last.sequence, diverged)


async def catch_up_file(db: Queryable, path: Path) -> int:
    """Append to the file the entries the table has and it lacks; how many. Raises
    JournalFileError if the file is ahead of the table or disagrees with it."""
    state = await file_state(db, path)
    if state.diverged_at is not None or state.ahead:
        raise JournalFileError(
            f"{path} holds entries the database lacks; run `continuity erasures reapply`"
        )
    if not state.behind:
        return 0
    missing = await table_entries(db, after=state.file_head)
    return await asyncio.to_thread(append_to_file, path, missing)


async def write_after_commit(db: Queryable, path: Path) -> None:
    """Bring the file up to the table after an erasure committed. A failure does not undo the
    erasure: it is logged as an error, and the next erasure or start tries again."""
    try:
        written = await catch_up_file(db, path)
    except (OSError, JournalFileError) as exc:
        log.error(
            "erasure journal: the file %s is behind the database (%s); the erasure stands."
            " Fix the file and run `continuity erasures export`, or a restore from a backup"
            " may bring erased subjects back",
            path,
            exc,
        )
        return
    if written:
        log.info("erasure journal: %d entries appended to %s", written, path)


# Restores


async def _identity(conn: Conn) -> tuple[int, int, int]:
    row = await conn.fetchrow(
        "SELECT (SELECT system_identifier FROM pg_control_system()),"
        " (SELECT oid::bigint FROM pg_database WHERE datname = current_database()),"
        " (SELECT oid::bigint FROM pg_namespace WHERE nspname = current_schema())"
    )
    assert row is not None
    return row[0], row[1], row[2]


async def _record_identity(conn: Conn, *, reapplied: bool) -> None:
    system, database, schema = await _identity(conn)
    await conn.execute(
        "INSERT INTO database_identity (system_identifier, database_oid, schema_oid,"
        " reapplied_at) VALUES ($1, $2, $3, CASE WHEN $4 THEN now() END)"
        " ON CONFLICT (only_row) DO UPDATE SET system_identifier = excluded.system_identifier,"
        " database_oid = excluded.database_oid, schema_oid = excluded.schema_oid,"
        " recorded_at = now(), reapplied_at = coalesce(excluded.reapplied_at,"
        " database_identity.reapplied_at)",
        system,
        database,
        schema,
        reapplied,
    )


async def check(conn: Conn, path: Path) -> None:
    """Refuse a restored database (ErasuresNotReapplied) until `reapply` has run; record a
    brand-new one. Reads the identity row and the file's last entry: cheap at every start. A
    file that cannot be read is logged as an error, not refused: it is the second copy."""
    row = await conn.fetchrow(
        "SELECT system_identifier, database_oid, schema_oid FROM database_identity"
    )
    if row is not None and tuple(row) != await _identity(conn):
        raise ErasuresNotReapplied(
            "this schema was restored from a backup: it was recorded in another database"
            " (or cluster, or schema) than the one it is in now"
        )
    if row is None:
        await _record_identity(conn, reapplied=False)
    try:
        state = await file_state(conn, path)
    except JournalFileError as exc:
        # The identity still guards against a dump restored; only a physical restore to an
        # earlier point would go unseen until the file is readable again.
        log.error(
            "erasure journal: %s; cannot tell whether the database was restored to a point"
            " before an erasure. `continuity erasures status` checks again",
            exc,
        )
        return
    if state.ahead:
        raise ErasuresNotReapplied(
            f"the erasure journal file {path} holds entries up to {state.file_head}, the"
            f" database only up to {state.table_head} (was it restored from a backup?)"
        )
    if state.diverged_at is not None:
        raise ErasuresNotReapplied(
            f"the erasure journal file {path} and the database disagree from entry"
            f" {state.diverged_at} on"
        )


async def open_journal(pool: asyncpg.Pool, signer: Signer, path: Path) -> None:
    """At start, once `check` passed: journal tombstones that predate the journal (erasures
    made before it existed), then bring the file up to the table."""
    async with pool.acquire() as conn, conn.transaction():
        await journal_erasures(conn, signer, None)
    await write_after_commit(pool, path)


@dataclass
class Reapplied:
    """What `reapply` did; all zero on a second run."""

    journaled: int = 0
    """Subjects in the journal (table and file together)."""
    reshredded: list[UUID] = field(default_factory=list)
    """Journaled subjects some of whose data had come back."""
    keys_destroyed: int = 0
    tombstones_recreated: int = 0
    projection_rows_deleted: int = 0
    devices_removed: int = 0
    handoff_codes_removed: int = 0
    identifiers_suppressed: int = 0
    entries_restored: int = 0
    """Entries only the file held, put back into the table as they were."""
    entries_rejournaled: int = 0
    """Subjects re-shredded from a file that disagrees with the table, journaled anew."""
    diverged_at: int | None = None


def _merge(
    table: list[JournalEntry], files: list[list[JournalEntry]]
) -> tuple[dict[UUID, JournalEntry], list[JournalEntry], int | None]:
    """Every journaled subject's entry; the files' entries that extend the table's chain as
    they are; the first entry where a file and the table disagree, if one does."""
    by_sequence = {e.sequence: e for e in table}
    subjects = {e.subject_id: e for e in table}
    head = table[-1].hash if table else GENESIS
    extend: list[JournalEntry] = []
    diverged: int | None = None
    for file in files:
        for entry in file:
            ours = by_sequence.get(entry.sequence)
            if ours is not None:
                if ours.hash != entry.hash:
                    diverged = min(entry.sequence, diverged or entry.sequence)
            elif entry.previous == head and entry.subject_id not in subjects:
                extend.append(entry)
                by_sequence[entry.sequence] = entry
                head = entry.hash
            subjects.setdefault(entry.subject_id, entry)
    return subjects, extend, diverged


async def reapply(
    conn: Conn,
    signer: Signer,
    schema: str,
    files: Mapping[str, list[JournalEntry]],
    extra_keys: Mapping[str, bytes] | None = None,
) -> Reapplied:
    """Destroy again, in one transaction, whatever of every journaled subject came back with a
    restore: wrapped keys, the tombstone (re-created), projection rows, devices, handoff codes,
    identifiers (suppressed again); put the files' entries the table lacks back; record this
    database as the schema's own. `files` maps each journal file's name to its entries.
    Raises JournalInvalid, doing nothing, if the table's or a file's journal fails
    verification. `signer` must be fetched before (it may create the key).
    """
    done = Reapplied()
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _JOURNAL_LOCK)
        keys = {**await journal_keys(conn), **(extra_keys or {})}
        table = verify_chain(await table_entries(conn), keys, "the database's journal")
        chains = [verify_chain(entries, keys, name) for name, entries in files.items()]
        journaled, extend, done.diverged_at = _merge(table, chains)
        subjects = sorted(journaled)
        done.journaled = len(subjects)
        back: set[UUID] = set()
        for row in await conn.fetch(
            "DELETE FROM subject_keys WHERE subject_id = ANY($1::uuid[])"
            " RETURNING subject_id, key_version",
            subjects,
        ):
            back.add(row["subject_id"])
            done.keys_destroyed += 1
        tombs = {
            row[0]
            for row in await conn.fetch(
                "SELECT subject_id FROM erased_subjects WHERE subject_id = ANY($1::uuid[])",
                subjects,
            )
        }
        for subject in subjects:
            if subject not in tombs:
                entry = journaled[subject]
                await conn.execute(
                    "INSERT INTO erased_subjects (subject_id, erased_at, key_versions,"
                    " events_unreadable) VALUES ($1, $2, $3,"
                    " (SELECT count(*) FROM events WHERE subject_id = $1))",
                    subject,
                    entry.erased_at,
                    entry.key_versions,
                )
                back.add(subject)
                done.tombstones_recreated += 1
            rows = await forget(conn, subject)
            if rows:
                back.add(subject)
                done.projection_rows_deleted += rows
        devices = await conn.fetch(
            "SELECT DISTINCT subject_id FROM devices WHERE subject_id = ANY($1::uuid[])", subjects
        )
        back.update(row[0] for row in devices)
        done.devices_removed = len(await forget_devices(conn, schema, subjects))
        codes = await conn.fetchval(
            "SELECT count(*) FROM handoff_codes WHERE subject_id = ANY($1::uuid[])", subjects
        )
        await forget_codes(conn, subjects)
        done.handoff_codes_removed = codes
        identified = await conn.fetch(
            "SELECT DISTINCT subject_id FROM identifiers WHERE subject_id = ANY($1::uuid[])",
            subjects,
        )
        back.update(row[0] for row in identified)
        done.identifiers_suppressed = await suppress(conn, subjects)
        await conn.execute(
            "SELECT pg_notify($1, s::text) FROM unnest($2::uuid[]) AS s",
            f"{schema}_keys",
            sorted(back),
        )
        for entry in extend:
            await _insert(conn, entry)
        done.entries_restored = len(extend)
        before = {e.subject_id for e in table} | {e.subject_id for e in extend}
        refs = await journal_erasures(conn, signer, subjects)
        done.entries_rejournaled = sum(1 for ref in refs if ref.subject_id not in before)
        await _record_identity(conn, reapplied=True)
    done.reshredded = sorted(back)
    return done


__all__ = [
    "ErasuresNotReapplied",
    "FileState",
    "JournalFileError",
    "JournalInvalid",
    "Reapplied",
    "append_to_file",
    "catch_up_file",
    "check",
    "file_state",
    "journal_erasures",
    "journal_file",
    "journal_keys",
    "last_in_file",
    "open_journal",
    "read_file",
    "reapply",
    "rewrite_file",
    "table_entries",
    "write_after_commit",
]
