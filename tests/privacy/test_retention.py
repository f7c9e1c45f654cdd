"""Retention by age: old periods' conversation turns become unreadable while recent ones stay
readable and the conversation still loads; idle guests are shredded whole; every process drops
the destroyed keys; a run is idempotent and recorded without personal data."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest
from click.testing import CliRunner

from continuity.cli import main
from continuity.retention import run_retention
from continuity.runtime import Runtime
from continuity.settings import RetentionPolicy, Settings, SettingsError, retention_policies
from privacy.vault import CONVERSATION, GENERAL
from tests.api.test_timeline_api import MINE, until_listed
from tests.conftest import AppFactory, client_of
from tests.continuity import test_cli
from tests.helpers import MUG, TokenFactory

pytestmark = pytest.mark.anyio

OLD_TEXT = "my old card number is 4111 1111 1111 1111"
RECENT_TEXT = "any news about my refund?"


class Clock:
    """A clock a test moves: what the vault takes as now, to write in past periods."""

    def __init__(self) -> None:
        self.at = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.at


async def test_old_turns_expire_recent_ones_stay_and_every_process_drops_the_keys(
    started: AppFactory, auth: TokenFactory
) -> None:
    customer = uuid4()
    me = auth(customer)
    async with started(key_period_days=1) as one, started(key_period_days=1) as two:
        first: Runtime = one.state.runtime
        second: Runtime = two.state.runtime
        clock = Clock()
        second.vault.clock = clock
        clock.at = datetime.now(UTC) - timedelta(days=10)
        async with client_of(two) as client:  # the second process writes, and caches the keys
            opened = await client.post(
                "/v1/me/conversations", json={"medium": "web_chat", "text": OLD_TEXT}, headers=me
            )
            assert opened.status_code == 201, opened.text
            conversation = opened.json()["conversation_id"]
            turns = f"/v1/me/conversations/{conversation}/turns"
            said = await client.post(
                turns, json={"medium": "web_chat", "text": OLD_TEXT + " again"}, headers=me
            )
            assert said.status_code == 200, said.text
            clock.at = datetime.now(UTC)  # ten days on: a new period, new keys
            said = await client.post(
                turns, json={"medium": "web_chat", "text": RECENT_TEXT}, headers=me
            )
            assert said.status_code == 200, said.text
        keys = await first.pool.fetch(
            "SELECT key_version, key_class, not_after FROM subject_keys WHERE subject_id = $1"
            " ORDER BY key_version",
            customer,
        )
        old = [k["key_version"] for k in keys if k["not_after"] < datetime.now(UTC)]
        classes = {(k["key_class"], k["not_after"] > datetime.now(UTC)) for k in keys}
        assert classes == {(c, recent) for c in (GENERAL, CONVERSATION) for recent in (False, True)}
        expired_key = next(
            k["key_version"]
            for k in keys
            if k["key_class"] == CONVERSATION and k["key_version"] in old
        )
        assert second.vault._cached(customer, expired_key) is not None  # cached in process two

        policy = RetentionPolicy("conversations", timedelta(days=2))
        report = await run_retention(first.store, first.vault, [policy], views=[first.sessions])

        (outcome,) = report.policies
        assert (outcome.subjects, outcome.keys_destroyed, outcome.events_unreadable) == (1, 1, 2)
        assert {first.process.process_id, second.process.process_id} <= set(
            report.processes_acknowledged
        )
        assert report.processes_missing == []
        assert second.vault._cached(customer, expired_key) is None  # dropped by the broadcast

        async with client_of(two) as client:
            read = await client.get(f"/v1/me/conversations/{conversation}", headers=me)
            assert read.status_code == 200, read.text
            entries = read.json()["entries"]
            assert [(e["kind"], e.get("expired", False), e.get("text")) for e in entries] == [
                ("opened", False, None),
                ("turn", True, None),
                ("turn", True, None),
                ("turn", False, RECENT_TEXT),
            ]
            assert read.json()["conversation"]["turns"] == 3
            said = await client.post(  # the conversation still loads, and takes turns
                f"/v1/me/conversations/{conversation}/turns",
                json={"medium": "web_chat", "text": "hello?"},
                headers=me,
            )
            assert said.status_code == 200, said.text
            session = await client.get("/v1/me/session", headers=me)
            assert session.status_code == 200, session.text
            assert OLD_TEXT not in session.text  # the view was folded afresh
            assert RECENT_TEXT in session.text

        again = await run_retention(first.store, first.vault, [policy], views=[first.sessions])
        assert [(o.subjects, o.keys_destroyed, o.events_unreadable) for o in again.policies] == [
            (0, 0, 0)
        ]
        runs = await first.pool.fetch(
            "SELECT policy, subjects, keys_destroyed, events_unreadable FROM retention_runs"
            " ORDER BY started_at"
        )
        assert [tuple(r) for r in runs] == [("conversations", 1, 1, 2), ("conversations", 0, 0, 0)]


async def test_no_view_or_rebuild_keeps_an_expired_turn(
    runtime: Runtime, client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    """The timeline's rows sealed with the destroyed key go; the session is folded afresh; and
    rebuilding every projection from the log afterwards passes over the expired turn (no
    version gap), which the conversation queue still counts."""
    me = auth(uuid4())
    clock = Clock()
    runtime.vault.clock = clock
    clock.at = datetime.now(UTC) - timedelta(days=100)
    opened = await client.post(
        "/v1/me/conversations", json={"medium": "web_chat", "text": OLD_TEXT}, headers=me
    )
    assert opened.status_code == 201, opened.text
    conversation = opened.json()["conversation_id"]
    clock.at = datetime.now(UTC)
    said = await client.post(
        f"/v1/me/conversations/{conversation}/turns",
        json={"medium": "web_chat", "text": RECENT_TEXT},
        headers=me,
    )
    assert said.status_code == 200, said.text
    assert OLD_TEXT in str(await until_listed(client, me, 3))

    policy = RetentionPolicy("conversations", timedelta(days=60))
    report = await run_retention(runtime.store, runtime.vault, [policy], views=[runtime.sessions])

    assert [(o.events_unreadable, o.projection_rows_deleted) for o in report.policies] == [(1, 1)]
    listed = await client.get(MINE, params={"limit": 100}, headers=me)
    assert listed.status_code == 200, listed.text
    assert len(listed.json()["items"]) == 2
    assert OLD_TEXT not in listed.text
    for projection in runtime.projections:
        await runtime.rebuilder.rebuild(projection)
    session = await client.get("/v1/me/session", headers=me)
    assert session.status_code == 200, session.text
    assert OLD_TEXT not in session.text
    assert RECENT_TEXT in session.text
    listed = await client.get(MINE, params={"limit": 100}, headers=me)
    assert len(listed.json()["items"]) == 2
    turns = await runtime.pool.fetchval(
        "SELECT turns FROM conversation_queue WHERE conversation_id = $1", UUID(conversation)
    )
    assert turns == 2


async def test_a_request_retried_after_its_key_period_ended_is_answered_not_refused(
    runtime: Runtime, client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    """A retry's digest is checked with the key its first attempt was recorded under, even
    when the period of that key has ended since (an offline queue replays days later)."""
    customer = uuid4()
    clock = Clock()
    runtime.vault.clock = clock
    clock.at = datetime.now(UTC) - timedelta(days=40)  # the default period is 30 days
    headers = {**auth(customer), "Idempotency-Key": str(uuid4())}
    first = await client.post("/v1/me/cart/items", json=MUG, headers=headers)
    assert first.status_code == 200, first.text
    clock.at = datetime.now(UTC)
    await runtime.vault.key_for_writing(customer)  # the next period's key is the current one

    again = await client.post("/v1/me/cart/items", json=MUG, headers=headers)

    assert again.status_code == 200, again.text
    assert again.json()["version"] == first.json()["version"]
    assert again.json()["items"][0]["quantity"] == 1
    versions = await runtime.pool.fetchval(
        "SELECT count(*) FROM subject_keys WHERE subject_id = $1", customer
    )
    assert versions == 2


async def test_idle_guests_are_shredded_active_and_linked_ones_are_not(
    runtime: Runtime, auth: TokenFactory
) -> None:
    idle, active, linked = [
        (await runtime.guests.start("phone", "app")).subject_id for _ in range(3)
    ]
    long_ago = datetime.now(UTC) - timedelta(days=40)
    await runtime.pool.execute(
        "UPDATE guests SET created_at = $1, linked_to = CASE WHEN subject_id = $2 THEN $3::uuid END"
        " WHERE subject_id = ANY($4::uuid[])",
        long_ago,
        linked,
        uuid4(),
        [idle, linked, active],
    )
    await runtime.pool.execute(
        "UPDATE devices SET last_seen = $1, first_seen = $1 WHERE subject_id = ANY($2::uuid[])",
        long_ago,
        [idle, linked],
    )
    policy = RetentionPolicy("guests", timedelta(days=30))

    report = await run_retention(runtime.store, runtime.vault, [policy])

    assert [o.subjects for o in report.policies] == [1]
    erased = {row[0] for row in await runtime.pool.fetch("SELECT subject_id FROM erased_subjects")}
    assert erased == {idle}
    again = await run_retention(runtime.store, runtime.vault, [policy])
    assert [o.subjects for o in again.policies] == [0]


async def test_a_legal_hold_suspends_retention_until_it_is_lifted(runtime: Runtime) -> None:
    """A held subject's data is evidence: retention leaves it as an erasure request would."""
    held = (await runtime.guests.start("phone", "app")).subject_id
    long_ago = datetime.now(UTC) - timedelta(days=40)
    await runtime.pool.execute(
        "UPDATE guests SET created_at = $1 WHERE subject_id = $2", long_ago, held
    )
    await runtime.pool.execute(
        "UPDATE devices SET last_seen = $1, first_seen = $1 WHERE subject_id = $2", long_ago, held
    )
    policy = RetentionPolicy("guests", timedelta(days=30))
    officer = uuid4()
    await runtime.holds.place(held, officer, "litigation: keep everything")

    report = await run_retention(runtime.store, runtime.vault, [policy])
    assert [o.subjects for o in report.policies] == [0]
    assert not await runtime.vault.erased_among([held])

    await runtime.holds.lift(held, officer)
    report = await run_retention(runtime.store, runtime.vault, [policy])
    assert [o.subjects for o in report.policies] == [1]
    assert await runtime.vault.erased_among([held]) == {held}


async def test_a_key_from_before_periods_is_closed_not_misread_and_versions_are_not_reused(
    runtime: Runtime,
) -> None:
    subject = uuid4()
    clock = Clock()
    runtime.vault.clock = clock
    runtime.vault.period = None  # as before migration 0020: one key, no period
    legacy = await runtime.vault.key_for_writing(subject)
    row = await runtime.pool.fetchrow(
        "SELECT not_before, not_after FROM subject_keys WHERE subject_id = $1", subject
    )
    assert row is not None
    assert tuple(row) == (clock.at, None)
    await runtime.pool.execute(  # a key written before 0020 has no period at all
        "UPDATE subject_keys SET not_before = NULL WHERE subject_id = $1", subject
    )

    runtime.vault.period = timedelta(days=1)
    runtime.vault.drop_cache()
    current = await runtime.vault.key_for_writing(subject)

    assert current.version == legacy.version + 1
    closed = await runtime.pool.fetchval(
        "SELECT not_after FROM subject_keys WHERE subject_id = $1 AND key_version = $2",
        subject,
        legacy.version,
    )
    assert closed == clock.at  # closed when periods began, not read as a 1970 period
    assert await runtime.vault.keys_for_reading([(subject, legacy.version)])  # still reads

    clock.at += timedelta(days=1, seconds=1)
    turn_key = await runtime.vault.key_for_writing(subject, CONVERSATION)
    async with runtime.pool.acquire() as conn, conn.transaction():
        await runtime.vault.expire(conn, subject, [turn_key.version], uuid4())
    clock.at += timedelta(days=1, seconds=1)
    runtime.vault.drop_cache()
    newer = await runtime.vault.key_for_writing(subject, CONVERSATION)
    assert newer.version == turn_key.version + 1  # a destroyed key's version is never reused
    assert await runtime.vault.expired_among([(subject, turn_key.version)]) == {
        (subject, turn_key.version)
    }


def test_retention_policies_are_parsed_and_bad_ones_named() -> None:
    assert retention_policies("conversations=730d, guests=48h") == (
        RetentionPolicy("conversations", timedelta(days=730)),
        RetentionPolicy("guests", timedelta(hours=48)),
    )
    assert Settings.from_env({}).retention == ()
    assert Settings.from_env({}).key_period == timedelta(days=30)
    assert Settings.from_env({"CONTINUITY_KEY_PERIOD_DAYS": "0"}).key_period is None
    for bad in ("carts=30d", "guests=0d", "guests=soon", "guests", "guests=1d,guests=2d"):
        with pytest.raises(SettingsError, match="CONTINUITY_RETENTION"):
            retention_policies(bad)
    with pytest.raises(SettingsError, match="CONTINUITY_RETENTION_INTERVAL"):
        Settings.from_env({"CONTINUITY_RETENTION_INTERVAL": "-1"})


cli_env = test_cli.cli_env
"""The CLI tests' environment: a fresh schema, a master key, dropped afterwards."""


def test_the_cli_applies_the_policies_and_prints_what_it_made_unreadable(
    cli_env: dict[str, str], database_url: str
) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["migrate"], env=cli_env).exit_code == 0
    idle = uuid4()

    async def an_idle_guest() -> None:
        conn = await asyncpg.connect(
            database_url, server_settings={"search_path": cli_env["CONTINUITY_DATABASE_SCHEMA"]}
        )
        try:
            await conn.execute(
                "INSERT INTO guests (subject_id, created_at)"
                " VALUES ($1, now() - interval '9 days')",
                idle,
            )
        finally:
            await conn.close()

    asyncio.run(an_idle_guest())
    unset = runner.invoke(main, ["retention", "run"], env=cli_env)
    assert unset.exit_code == 2
    assert "CONTINUITY_RETENTION" in unset.output

    env = {**cli_env, "CONTINUITY_RETENTION": "guests=7d,conversations=730d"}
    ran = runner.invoke(main, ["retention", "run"], env=env)

    assert ran.exit_code == 0, ran.output
    assert "guests (older than 7 days): 1 subjects, 0 keys destroyed" in ran.output
    assert "conversations (older than 730 days): 0 subjects" in ran.output
    assert str(idle) not in ran.output  # counts, never who
    again = runner.invoke(main, ["retention", "run", "--policy", "guests=7d"], env=cli_env)
    assert again.exit_code == 0, again.output
    assert "guests (older than 7 days): 0 subjects" in again.output
    bad = runner.invoke(main, ["retention", "run", "--policy", "carts=1d"], env=cli_env)
    assert bad.exit_code == 2
    assert "--policy" in bad.output
