"""The erasure journal in the database and in its file: written with the erasure, named by the
certificate, free of personal data; a restore is refused at start until `continuity erasures
reapply` has destroyed again what came back; a forged or cut journal is refused.

The restores here are made by hand in one schema (keys put back, the journal row removed);
tests/continuity/test_backup_restore.py restores a real `pg_dump` into a new database."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from uuid import UUID, uuid4

import anyio
import asyncpg
import msgspec
import pytest
from click.testing import CliRunner

from aggregates.metadata import EventMeta
from continuity import carts
from continuity.cli import main
from continuity.erasure import shred_subject
from continuity.erasure_journal import (
    ErasuresNotReapplied,
    JournalFileError,
    append_to_file,
    read_file,
    rewrite_file,
    table_entries,
)
from continuity.runtime import Runtime
from continuity.settings import Settings
from privacy.errors import SubjectErased
from privacy.journal import GENESIS, JOURNAL_KEY, JournalEntry, make_entry, verify_chain
from privacy.master_key import Ed25519Signer, Keyring

pytestmark = pytest.mark.anyio

PHONE = EventMeta("app", "phone")
EMAIL = "journal.tour@example.org"


def journal_settings(schema: str, tmp_path: Path) -> Settings:
    return Settings(
        database_schema=schema,
        erasure_journal=tmp_path / "erasure-journal.jsonl",
        data_dir=tmp_path / "data",
    )


async def cli(
    database_url: str, settings: Settings, keyring: Keyring, *args: str
) -> tuple[int, str]:
    """The command as an operator runs it (in a thread: it runs its own event loop)."""
    env = {
        "CONTINUITY_DATABASE_URL": database_url,
        "CONTINUITY_DATABASE_SCHEMA": settings.database_schema,
        "CONTINUITY_MASTER_KEY": ",".join(keyring.to_text().split()),
        "CONTINUITY_ERASURE_JOURNAL": str(settings.erasure_journal),
        "CONTINUITY_DATA_DIR": str(settings.data_dir),
    }
    result = await anyio.to_thread.run_sync(lambda: CliRunner().invoke(main, list(args), env=env))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


async def live_subject(runtime: Runtime) -> UUID:
    """A guest with a device, a cart (events and projection rows), an email address and a
    handoff code: every kind of thing an erasure destroys."""
    device = await runtime.guests.start("phone", "app")
    subject = device.subject_id
    await add(runtime, subject, "MUG-1")
    await add(runtime, subject, "TEA-2")
    await runtime.identifiers.register(subject, "email", f"{subject.hex[:8]}.{EMAIL}")
    await runtime.handoff.issue(subject, device.device_id)
    return subject


async def add(runtime: Runtime, subject: UUID, sku: str) -> None:
    command = carts.add_item(sku, f"item {sku}", Decimal("2.00"), 1)
    await runtime.carts.execute(subject, PHONE, command, idempotency_key=uuid4(), opens_cart=True)


async def held(db: asyncpg.Pool | asyncpg.Connection, subject: UUID) -> dict[str, int]:
    """What the database holds of `subject`, table by table (projection tables by catalog)."""
    counts = {}
    for table in ("subject_keys", "devices", "identifiers", "handoff_codes"):
        counts[table] = await db.fetchval(
            f"SELECT count(*) FROM {table} WHERE subject_id = $1", subject
        )
    counts["erased_subjects"] = await db.fetchval(
        "SELECT count(*) FROM erased_subjects WHERE subject_id = $1", subject
    )
    counts["projection rows"] = 0
    for row in await db.fetch(
        "SELECT t.name, t.col FROM projections p, unnest(p.tables, p.subject_columns)"
        " AS t(name, col) WHERE t.col IS NOT NULL"
    ):
        counts["projection rows"] += await db.fetchval(
            f'SELECT count(*) FROM "{row["name"]}" WHERE "{row["col"]}" = $1', subject
        )
    return counts


ERASED = {
    "subject_keys": 0,
    "devices": 0,
    "identifiers": 0,
    "handoff_codes": 0,
    "erased_subjects": 1,
    "projection rows": 0,
}


async def readable(runtime: Runtime, subject: UUID) -> list[bool]:
    """For each of the subject's events, whether it decrypts (False: an erased placeholder)."""
    records = await runtime.store.select_subject(subject)
    return [e.event is not None for e in await runtime.mapper.to_envelopes(records)]


async def test_an_erasure_journals_the_subject_and_its_guest_and_the_certificate_names_them(
    database_url: str, schema: str, keyring: Keyring, tmp_path: Path
) -> None:
    settings = journal_settings(schema, tmp_path)
    runtime = await Runtime.open(settings, database_url, keyring)
    try:
        customer, guest, bystander = uuid4(), await live_subject(runtime), uuid4()
        await add(runtime, customer, "MUG-1")
        await add(runtime, bystander, "MUG-1")
        await runtime.pool.execute("UPDATE guests SET linked_to = $1", customer)
        certificate = await shred_subject(
            runtime.store, runtime.vault, customer, journal_file=runtime.erasure_journal
        )
        again = await shred_subject(
            runtime.store, runtime.vault, customer, journal_file=runtime.erasure_journal
        )
        rows = await runtime.pool.fetch("SELECT * FROM erasure_journal ORDER BY sequence")
    finally:
        await runtime.close()

    assert [(r["sequence"], r["subject_id"]) for r in rows] == [(1, customer), (2, guest)]
    assert [(j.subject_id, j.sequence, j.hash) for j in certificate.journal] == [
        (r["subject_id"], r["sequence"], r["hash"]) for r in rows
    ]
    assert again.already_erased
    assert again.journal == certificate.journal  # no second entry
    assert rows[1]["previous"] == rows[0]["hash"]
    in_file = read_file(tmp_path / "erasure-journal.jsonl")
    assert [(e.sequence, e.hash) for e in in_file] == [(r["sequence"], r["hash"]) for r in rows]
    text = (tmp_path / "erasure-journal.jsonl").read_text(encoding="utf-8")
    assert text.count("\n") == 2
    assert str(bystander) not in text
    for secret in ("MUG-1", "journal.tour", "example.org", "phone"):
        assert secret not in text
    assert set(msgspec.json.decode(text.splitlines()[0])) == {
        "sequence",
        "subject_id",
        "erased_at",
        "key_versions",
        "previous",
        "key_id",
        "signature",
        "hash",
    }


async def test_the_journal_table_is_append_only(
    database_url: str, schema: str, keyring: Keyring, tmp_path: Path
) -> None:
    runtime = await Runtime.open(journal_settings(schema, tmp_path), database_url, keyring)
    try:
        subject = uuid4()
        await add(runtime, subject, "MUG-1")
        await shred_subject(runtime.store, runtime.vault, subject)
        for statement in (
            "UPDATE erasure_journal SET erased_at = now()",
            "DELETE FROM erasure_journal",
            "TRUNCATE erasure_journal",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await runtime.pool.execute(statement)
    finally:
        await runtime.close()


async def restore_without_the_erasure(
    pool: asyncpg.Pool, subject: UUID, keys: list[asyncpg.Record]
) -> None:
    """What the database looks like when restored from a backup taken before `subject` was
    erased: their wrapped keys back, no tombstone, no journal entry."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE erasure_journal DISABLE TRIGGER USER")
        await conn.execute("DELETE FROM erasure_journal WHERE subject_id = $1", subject)
        await conn.execute("ALTER TABLE erasure_journal ENABLE TRIGGER USER")
        await conn.execute("DELETE FROM erased_subjects WHERE subject_id = $1", subject)
        await conn.executemany(
            "INSERT INTO subject_keys (subject_id, key_version, kek_id, wrapped_key)"
            " VALUES ($1, $2, $3, $4)",
            [tuple(k) for k in keys],
        )


async def erase_and_restore(
    database_url: str, settings: Settings, keyring: Keyring
) -> tuple[UUID, UUID]:
    """Erase two subjects; then undo the second one's erasure in the database (a restore) so
    that only the file remembers it. Returns (first, second)."""
    runtime = await Runtime.open(settings, database_url, keyring)
    try:
        first, second = uuid4(), uuid4()
        for subject in (first, second):
            await add(runtime, subject, "MUG-1")
        keys = await runtime.pool.fetch(
            "SELECT subject_id, key_version, kek_id, wrapped_key FROM subject_keys"
            " WHERE subject_id = $1",
            second,
        )
        for subject in (first, second):
            await shred_subject(
                runtime.store, runtime.vault, subject, journal_file=runtime.erasure_journal
            )
        await restore_without_the_erasure(runtime.pool, second, keys)
    finally:
        await runtime.close()
    return first, second


async def test_an_erasure_only_the_file_remembers_is_refused_at_start_then_reapplied(
    database_url: str, schema: str, keyring: Keyring, tmp_path: Path, pool: asyncpg.Pool
) -> None:
    settings = journal_settings(schema, tmp_path)
    first, second = await erase_and_restore(database_url, settings, keyring)
    assert (await held(pool, second))["subject_keys"] == 1

    with pytest.raises(ErasuresNotReapplied, match="continuity erasures reapply") as refused:
        await Runtime.open(settings, database_url, keyring)
    assert "holds entries up to 2, the database only up to 1" in str(refused.value)
    code, output = await cli(database_url, settings, keyring, "erasures", "status")
    assert code == 1
    assert "continuity erasures reapply" in output

    code, output = await cli(database_url, settings, keyring, "erasures", "reapply")
    assert code == 0, output
    assert "2 journaled subjects; 1 re-shredded" in output
    assert "1 keys destroyed, 1 tombstones re-created" in output
    assert f"re-shredded {second}" in output
    assert f"re-shredded {first}" not in output
    assert "1 entries restored from the file" in output
    assert await held(pool, second) == ERASED
    assert await pool.fetchval("SELECT count(*) FROM erasure_journal") == 2

    code, output = await cli(database_url, settings, keyring, "erasures", "reapply")
    assert code == 0, output
    assert "2 journaled subjects; 0 re-shredded (data had come back): 0 keys destroyed" in output
    runtime = await Runtime.open(settings, database_url, keyring)
    try:
        assert await readable(runtime, second) == [False, False]  # opened, item added
        with pytest.raises(SubjectErased):
            await add(runtime, second, "MUG-2")
    finally:
        await runtime.close()


async def test_a_tampered_file_entry_is_refused_and_nothing_is_changed(
    database_url: str, schema: str, keyring: Keyring, tmp_path: Path, pool: asyncpg.Pool
) -> None:
    settings = journal_settings(schema, tmp_path)
    _, second = await erase_and_restore(database_url, settings, keyring)
    path = tmp_path / "erasure-journal.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    entry = msgspec.json.decode(lines[1], type=JournalEntry)
    victim = uuid4()  # a forger naming someone else to have them destroyed
    lines[1] = msgspec.json.encode(msgspec.structs.replace(entry, subject_id=victim)) + b"\n"
    path.write_bytes(b"".join(lines))

    code, output = await cli(database_url, settings, keyring, "erasures", "reapply")
    assert code == 1
    assert "REFUSED, nothing was changed" in output
    assert "entry 2: the signature does not verify: the entry was forged or altered" in output
    assert (await held(pool, second))["subject_keys"] == 1
    assert (
        await pool.fetchval("SELECT count(*) FROM erased_subjects WHERE subject_id = $1", victim)
        == 0
    )
    with pytest.raises(ErasuresNotReapplied):
        await Runtime.open(settings, database_url, keyring)


async def test_a_removed_entry_is_detected_by_the_chain(
    database_url: str, schema: str, keyring: Keyring, tmp_path: Path
) -> None:
    settings = journal_settings(schema, tmp_path)
    runtime = await Runtime.open(settings, database_url, keyring)
    try:
        for _ in range(3):
            subject = uuid4()
            await add(runtime, subject, "MUG-1")
            await shred_subject(
                runtime.store, runtime.vault, subject, journal_file=runtime.erasure_journal
            )
    finally:
        await runtime.close()
    path = tmp_path / "erasure-journal.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(lines[0] + lines[2])

    code, output = await cli(
        database_url, settings, keyring, "erasures", "reapply", "--journal", str(copy)
    )
    assert code == 1
    assert f"{copy}: entry 2: missing: the journal jumps from entry 1 to 3" in output


async def test_a_journal_file_that_cannot_be_written_leaves_the_erasure_standing(
    database_url: str,
    schema: str,
    keyring: Keyring,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = journal_settings(schema, tmp_path)
    path = tmp_path / "erasure-journal.jsonl"
    path.mkdir()  # a directory where the file should be: every write fails
    runtime = await Runtime.open(settings, database_url, keyring)
    try:
        subject = uuid4()
        await add(runtime, subject, "MUG-1")
        with caplog.at_level(logging.ERROR, "continuity.erasure_journal"):
            certificate = await shred_subject(
                runtime.store, runtime.vault, subject, journal_file=runtime.erasure_journal
            )
        assert certificate.journal[0].sequence == 1
        assert await held(runtime.pool, subject) == ERASED
    finally:
        await runtime.close()
    assert any(
        "is behind the database" in r.message and r.levelno == logging.ERROR for r in caplog.records
    )
    code, output = await cli(database_url, settings, keyring, "erasures", "status")
    assert code == 1
    assert "the journal file is unusable" in output

    path.rmdir()
    code, output = await cli(database_url, settings, keyring, "erasures", "status")
    assert code == 1
    assert "the file is 1 entries behind" in output
    code, output = await cli(database_url, settings, keyring, "erasures", "export")
    assert code == 0, output
    assert f"1 entries written to {path}" in output
    assert [e.subject_id for e in read_file(path)] == [subject]
    code, output = await cli(database_url, settings, keyring, "erasures", "status")
    assert code == 0, output


async def test_a_start_catches_a_file_up_and_journals_tombstones_that_predate_the_journal(
    database_url: str, schema: str, keyring: Keyring, tmp_path: Path, pool: asyncpg.Pool
) -> None:
    settings = journal_settings(schema, tmp_path)
    old = uuid4()  # erased before the journal existed: a tombstone and no entry
    await pool.execute(
        "INSERT INTO erased_subjects (subject_id, key_versions, events_unreadable)"
        " VALUES ($1, '{1}', 0)",
        old,
    )
    await (await Runtime.open(settings, database_url, keyring)).close()
    assert [e.subject_id for e in read_file(tmp_path / "erasure-journal.jsonl")] == [old]
    assert await pool.fetchval("SELECT subject_id FROM erasure_journal") == old


async def test_a_schema_moved_to_another_database_or_schema_is_refused_until_reapplied(
    database_url: str, schema: str, keyring: Keyring, tmp_path: Path, pool: asyncpg.Pool
) -> None:
    settings = journal_settings(schema, tmp_path)
    await (await Runtime.open(settings, database_url, keyring)).close()
    recorded = await pool.fetchval("SELECT schema_oid FROM database_identity")
    assert recorded == await pool.fetchval(
        "SELECT oid::bigint FROM pg_namespace WHERE nspname = $1", schema
    )
    await (await Runtime.open(settings, database_url, keyring)).close()  # the same: trusted

    await pool.execute("UPDATE database_identity SET database_oid = database_oid + 1")
    with pytest.raises(ErasuresNotReapplied, match="restored from a backup"):
        await Runtime.open(settings, database_url, keyring)
    code, output = await cli(database_url, settings, keyring, "erasures", "reapply")
    assert code == 0, output
    assert "0 journaled subjects" in output
    assert await pool.fetchval("SELECT reapplied_at IS NOT NULL FROM database_identity")
    await (await Runtime.open(settings, database_url, keyring)).close()


async def test_export_refuses_to_overwrite_entries_the_database_lacks(
    database_url: str, schema: str, keyring: Keyring, tmp_path: Path
) -> None:
    settings = journal_settings(schema, tmp_path)
    await erase_and_restore(database_url, settings, keyring)
    before = (tmp_path / "erasure-journal.jsonl").read_bytes()
    code, output = await cli(database_url, settings, keyring, "erasures", "export")
    assert code == 1
    assert "run `continuity erasures reapply` first" in output
    assert (tmp_path / "erasure-journal.jsonl").read_bytes() == before


async def test_the_journal_public_key_lets_a_backup_without_it_verify_the_file(
    database_url: str, schema: str, keyring: Keyring, tmp_path: Path, pool: asyncpg.Pool
) -> None:
    """A backup taken before the journal's key was created: the restored database cannot
    vouch for the file's entries, the operator's copy of the public key can."""
    settings = journal_settings(schema, tmp_path)
    _, second = await erase_and_restore(database_url, settings, keyring)
    code, pem = await cli(database_url, settings, keyring, "erasures", "public-key")
    assert code == 0
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    (tmp_path / "journal.pem").write_text(pem, encoding="ascii")
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE erasure_journal DISABLE TRIGGER USER")
        await conn.execute("DELETE FROM erasure_journal")
        await conn.execute("ALTER TABLE erasure_journal ENABLE TRIGGER USER")
        await conn.execute("DELETE FROM system_keys WHERE name = 'erasure-journal'")

    code, output = await cli(database_url, settings, keyring, "erasures", "reapply")
    assert code == 1
    assert "not a known journal key" in output
    code, output = await cli(
        database_url,
        settings,
        keyring,
        "erasures",
        "reapply",
        "--public-key",
        str(tmp_path / "journal.pem"),
    )
    assert code == 0, output
    assert "2 journaled subjects; 1 re-shredded" in output
    assert await held(pool, second) == ERASED


async def test_concurrent_erasures_make_one_chain_in_the_table_and_in_the_file(
    database_url: str, schema: str, keyring: Keyring, tmp_path: Path, pool: asyncpg.Pool
) -> None:
    settings = journal_settings(schema, tmp_path)
    runtime = await Runtime.open(settings, database_url, keyring)
    try:
        subjects = [uuid4() for _ in range(6)]
        for subject in subjects:
            await add(runtime, subject, "MUG-1")
        certificates = await asyncio.gather(
            *(
                shred_subject(runtime.store, runtime.vault, s, journal_file=runtime.erasure_journal)
                for s in subjects
            )
        )
        signer = await runtime.vault.signer(JOURNAL_KEY)
    finally:
        await runtime.close()
    keys = {signer.key_id: signer.public_key}
    table = verify_chain(await table_entries(pool), keys, "table")
    in_file = verify_chain(read_file(tmp_path / "erasure-journal.jsonl"), keys, "file")
    assert table == in_file
    assert sorted(e.subject_id for e in table) == sorted(subjects)
    assert sorted(c.journal[0].sequence for c in certificates) == list(range(1, 7))


async def test_a_line_torn_by_a_crash_is_written_again_and_rewrites_lose_no_append(
    tmp_path: Path,
) -> None:
    signer = Ed25519Signer.generate()
    entries: list[JournalEntry] = []
    for n in range(1, 4):
        previous = entries[-1].hash if entries else GENESIS
        entries.append(make_entry(signer, n, uuid4(), datetime.now(UTC), [1], previous))
    path = tmp_path / "journal.jsonl"
    assert append_to_file(path, entries[:2]) == 2
    whole = path.read_bytes()
    path.write_bytes(whole[:-40])  # the second line torn mid-write
    assert [e.sequence for e in read_file(path)] == [1]
    assert append_to_file(path, entries) == 2
    assert read_file(path) == entries
    assert append_to_file(path, entries) == 0
    assert rewrite_file(path, entries[:1]) == 1
    assert append_to_file(path, entries) == 2
    assert read_file(path) == entries
    with pytest.raises(JournalFileError, match="ends at entry 3"):
        append_to_file(path, [msgspec.structs.replace(entries[0], sequence=5)])
