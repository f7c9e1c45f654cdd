"""The `continuity` command: serve, migrate, issue tokens, erase a subject, rotate the master key.

Built on click (already a dependency of uvicorn and Litestar's own CLI)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import warnings
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import asyncpg
import click
import msgspec

from continuity.settings import MAX_WORKERS, WORKERS_BY_DEFAULT, Settings, SettingsError
from privacy.certificates import CERTIFICATE_KEY, SignedCertificate, sign, verify
from privacy.master_key import SignatureInvalid

T = TypeVar("T")

warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None


def _with_runtime(
    settings: Settings, work: Callable[[Any], Awaitable[T]], *, build_stale: bool = True
) -> T:
    """Connect (starting the embedded database if none is configured), run `work`, clean up."""
    from continuity.runtime import Runtime, resolve_database

    url, server = resolve_database(settings)

    async def main() -> T:
        runtime = await Runtime.open(settings, url, build_stale=build_stale)
        try:
            return await work(runtime)
        finally:
            await runtime.close()

    try:
        return asyncio.run(main())
    finally:
        if server is not None:
            server.cleanup()


@click.group()
def main() -> None:
    """Continuity: one continuous conversation across devices and channels."""


@main.command()
@click.option(
    "--host", default=None, help="Interface to bind (default CONTINUITY_HOST or 127.0.0.1)."
)
@click.option("--port", type=int, default=None, help="Port (default CONTINUITY_PORT or 8000).")
@click.option(
    "--workers",
    type=click.IntRange(1, MAX_WORKERS),
    default=None,
    help="Server processes (default CONTINUITY_WORKERS, else one per core up to"
    f" {WORKERS_BY_DEFAULT}, or half the cores when PostgreSQL runs on this machine (embedded,"
    " loopback or socket), as it needs them: 1 on 2 cores). Each worker has its own database"
    " pool, key cache and rate-limit counts; see docs/operations.md.",
)
def run(host: str | None, port: int | None, workers: int | None) -> None:
    """Migrate and serve the API (embedded PostgreSQL unless CONTINUITY_DATABASE_URL is set)."""
    from continuity import logs
    from continuity.form_catalog import load_forms

    settings = _settings()
    try:
        load_forms(settings.forms_dir)  # refused before anything starts, every fault named
    except SettingsError as exc:
        raise click.UsageError(f"the form definitions cannot be used:\n{exc}") from None
    host = host or settings.host
    port = port or settings.port
    workers = workers or settings.workers
    logs.configure(settings.log_level, settings.log_format, with_pid=workers > 1)
    logging.captureWarnings(True)  # a library's warning is a log event too, in the same format
    if workers == 1:
        _serve_in_process(settings, host, port)
    else:
        _serve_with_workers(settings, host, port, workers)


def _uvicorn_options(settings: Settings) -> dict[str, Any]:
    # uvicorn's own logging set-up (log_config) would replace ours; its access log would name
    # client addresses and query strings: `api/request_context.py` writes one without them.
    return {
        "loop": "uvloop",
        "http": "httptools",
        "log_config": None,
        "log_level": settings.log_level.lower(),
        "access_log": False,
        "timeout_graceful_shutdown": settings.shutdown_grace,
    }


def _serve_in_process(settings: Settings, host: str, port: int) -> None:
    """One process: the app's lifespan starts the embedded database, migrates and serves."""
    import uvicorn

    from api.app import create_app
    from continuity.banner import banner

    try:
        app = create_app(settings)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(banner(settings, host, port, 1))
    uvicorn.run(app, host=host, port=port, **_uvicorn_options(settings))


def _stop(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _serve_with_workers(settings: Settings, host: str, port: int, workers: int) -> None:
    """The parent does the once-only work (`continuity/workers.py`), then uvicorn's supervisor
    spawns the workers, restarts one that dies, and on SIGTERM or SIGINT stops them all; the
    embedded database stops after them."""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    from api.worker import WORKER_APP
    from continuity.banner import banner
    from continuity.workers import prepared

    for signum in (signal.SIGTERM, signal.SIGINT):  # until uvicorn's supervisor takes them over
        signal.signal(signum, _stop)
    try:
        with prepared(settings, workers) as environment:
            os.environ.update(environment)
            config = uvicorn.Config(
                WORKER_APP,
                factory=True,
                host=host,
                port=port,
                workers=workers,
                **_uvicorn_options(settings),
            )
            click.echo(banner(settings, host, port, workers))
            supervisor = Multiprocess(config, sockets=[config.bind_socket()])
            supervisor.run()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes):
        raise SystemExit(STARTUP_FAILURE)


@main.command()
def migrate() -> None:
    """Apply pending migrations and exit."""
    from continuity.db import migrate as apply

    settings = _settings()

    applied: list[str] = []

    async def go(conn: asyncpg.Connection) -> None:
        applied.extend(await apply(conn, settings.database_schema))

    _with_connection(go, migrate_first=False)
    click.echo("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))


@main.command()
@click.option("--customer", "subject", type=click.UUID, help="The customer's id (a UUID).")
@click.option("--agent", "agent", type=click.UUID, help="An agent's id, for an agent token.")
@click.option(
    "--service", "service", type=click.UUID, help="A bot's or gateway's id, for a service token."
)
@click.option("--role", type=click.Choice(["customer", "agent", "compliance", "service"]))
@click.option("--device", help="The device name, required for a customer token.")
@click.option("--ttl", "ttl_seconds", type=int, default=None, help="Lifetime in seconds.")
def token(
    subject: UUID | None,
    agent: UUID | None,
    service: UUID | None,
    role: str | None,
    device: str | None,
    ttl_seconds: int | None,
) -> None:
    """Print a signed bearer token (JWT)."""
    from api.auth import issue_token
    from continuity.runtime import resolve_jwt_secret

    settings = _settings()
    who = subject or agent or service
    if who is None:
        raise click.UsageError(
            "give --customer UUID (with --device NAME), --agent UUID or --service UUID"
        )
    chosen = role or ("customer" if subject else "agent" if agent else "service")
    if chosen == "customer" and not device:
        raise click.UsageError("a customer token needs --device NAME")
    ttl = timedelta(seconds=ttl_seconds or settings.token_ttl_seconds)
    try:
        secret = resolve_jwt_secret(settings)
        text = issue_token(secret, who, chosen, device, ttl, settings.jwt_audience)  # type: ignore[arg-type]
    except ValueError as exc:  # SettingsError too
        raise click.UsageError(str(exc)) from None
    click.echo(text)


CONSOLE_TOKEN_HOURS = 8
"""A working day: how long `console-tokens` tokens last."""


@main.command("console-tokens")
def console_tokens() -> None:
    """Print where to sign in to the console, and a token for a new agent and a new compliance
    officer (eight hours each), signed with this server's JWT secret."""
    from uuid import uuid4

    from api.auth import issue_token
    from continuity.runtime import resolve_jwt_secret

    settings = _settings()
    secret = resolve_jwt_secret(settings)
    ttl = timedelta(hours=CONSOLE_TOKEN_HOURS)
    click.echo(f"Sign in at http://{settings.host}:{settings.port}/console/sign-in with:")
    for role, title in (("agent", "agent"), ("compliance", "compliance officer")):
        subject = uuid4()
        text = issue_token(secret, subject, role, None, ttl, settings.jwt_audience)  # type: ignore[arg-type]
        click.echo(f"\n{title} {subject}:\n{text}")


@main.command("erase-subject")
@click.argument("subject", type=click.UUID)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def erase_subject(subject: UUID, yes: bool) -> None:
    """Crypto-shred a data subject: destroy their keys; print the certificate (JSON). Refused
    while a legal hold stands on the subject (or a guest linked to them)."""
    from continuity.erasure import shred_subject
    from continuity.runtime import Runtime

    if not yes:
        click.confirm(f"Destroy every key of subject {subject}? This cannot be undone", abort=True)

    async def go(runtime: Runtime) -> bytes:
        hold = await runtime.holds.blocking(subject)
        if hold is not None:
            raise click.ClickException(
                f"subject {hold.subject_id} is under a legal hold placed at"
                f" {hold.placed_at.isoformat(timespec='seconds')}: nothing was erased. A"
                " compliance officer lifts it (DELETE /v1/privacy/subjects/{id}/hold), which"
                " carries out the erasure requests it blocked."
            )
        certificate = await shred_subject(
            runtime.store, runtime.vault, subject, journal_file=runtime.erasure_journal
        )
        signer = await runtime.vault.signer(CERTIFICATE_KEY)
        return msgspec.json.encode(sign(signer, certificate))

    click.echo(json.dumps(json.loads(_with_runtime(_settings(), go)), indent=2))


@main.group()
def retention() -> None:
    """Retention by age (CONTINUITY_RETENTION): make old data unreadable by destroying keys."""


@retention.command("run")
@click.option(
    "--policy",
    "policies",
    default=None,
    help="Policies to apply instead of CONTINUITY_RETENTION, such as conversations=730d.",
)
def retention_run(policies: str | None) -> None:
    """Apply the retention policies now; print what was made unreadable (no personal data)."""
    from continuity.retention import RetentionBusy, RetentionReport, run_retention
    from continuity.runtime import Runtime
    from continuity.settings import retention_policies

    settings = _settings()
    try:
        chosen = retention_policies(policies) if policies is not None else settings.retention
    except SettingsError as exc:
        raise click.UsageError(str(exc).replace("CONTINUITY_RETENTION", "--policy")) from None
    if not chosen:
        raise click.UsageError("no retention policy: set CONTINUITY_RETENTION or pass --policy")

    async def go(runtime: Runtime) -> RetentionReport:
        bars: dict[str, Any] = {}

        def progress(policy: str, done: int, total: int) -> None:
            bar = bars.get(policy)
            if bar is None:
                bar = bars[policy] = click.progressbar(
                    length=max(total, 1), label=f"{policy}: {total:,} subjects", file=sys.stderr
                )
                bar.__enter__()
            bar.update(done - bar.pos)
            if done >= total:
                bar.render_finish()

        try:
            return await run_retention(
                runtime.store,
                runtime.vault,
                chosen,
                views=[runtime.sessions],
                progress=progress,
                journal_file=runtime.erasure_journal,
            )
        finally:
            for bar in bars.values():
                bar.__exit__(None, None, None)

    try:
        report = _with_runtime(settings, go)
    except RetentionBusy as exc:
        raise click.ClickException(str(exc)) from None
    for outcome in report.policies:
        click.echo(
            f"{outcome.policy} (older than {outcome.max_age_days:g} days):"
            f" {outcome.subjects:,} subjects, {outcome.keys_destroyed:,} keys destroyed,"
            f" {outcome.events_unreadable:,} events now unreadable,"
            f" {outcome.projection_rows_deleted:,} projection rows deleted"
        )
    click.echo(
        f"run {report.run_id}: {len(report.processes_acknowledged)} processes dropped the keys"
        + (f", {len(report.processes_missing)} did not answer" if report.processes_missing else "")
    )


@main.group()
def suppression() -> None:
    """The suppression list: erased customers' identifiers, refused until lifted."""


@suppression.command("lift")
@click.option("--email", default=None, help="The email address to accept again.")
@click.option("--phone", default=None, help="The phone number to accept again (E.164).")
def suppression_lift(email: str | None, phone: str | None) -> None:
    """Let an erased customer's email address or phone number be used again (a compliance
    officer's decision): a message from it then starts a new guest."""
    from continuity.identifiers import Kind
    from continuity.runtime import Runtime

    if (email is None) == (phone is None):
        raise click.UsageError("give one of --email or --phone")
    kind: Kind = "email" if email is not None else "phone"
    value = email if email is not None else phone
    assert value is not None

    async def go(runtime: Runtime) -> bytes:
        return b"lifted" if await runtime.identifiers.lift(kind, value) else b"not suppressed"

    click.echo(_with_runtime(_settings(), go).decode("ascii"))


@main.group()
def certificate() -> None:
    """Erasure certificates: the signing key, and verifying one offline."""


@certificate.command("public-key")
def certificate_public_key() -> None:
    """Print the PEM public key certificates are signed with (also served at
    /.well-known/continuity-signing-key)."""
    from continuity.runtime import Runtime

    async def go(runtime: Runtime) -> bytes:
        return (await runtime.vault.signer(CERTIFICATE_KEY)).public_key_pem().encode("ascii")

    click.echo(_with_runtime(_settings(), go).decode("ascii"), nl=False)


@certificate.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--public-key",
    "key_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The service's public key (PEM), as `continuity certificate public-key` or the"
    " well-known route gives it. Needs no database.",
)
def certificate_verify(file: Path, key_file: Path) -> None:
    """Check a signed certificate offline: exit 0 if it verifies, 1 if it does not."""
    try:
        signed = msgspec.json.decode(file.read_bytes(), type=SignedCertificate)
        verify(signed, key_file.read_text(encoding="ascii"))
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"{file} is not a signed certificate: {exc}") from None
    except SignatureInvalid as exc:
        click.echo(f"FAILED: {exc}", err=True)
        sys.exit(1)
    click.echo(f"OK: signed by key {signed.signature.key_id}")


@main.group()
def log() -> None:
    """The event log's health after a restore (docs/operations.md)."""


def _with_connection(
    work: Callable[[asyncpg.Connection], Awaitable[T]], *, migrate_first: bool = True
) -> T:
    """Run `work` on one connection to the configured schema (migrated first, by default),
    starting the embedded database if none is configured."""
    from continuity.db import migrate as apply
    from continuity.runtime import resolve_database

    settings = _settings()
    url, server = resolve_database(settings)
    schema = settings.database_schema

    async def go() -> T:
        conn = await asyncpg.connect(url, server_settings={"search_path": schema})
        try:
            if migrate_first:
                await apply(conn, schema)
            return await work(conn)
        finally:
            await conn.close()

    try:
        return asyncio.run(go())
    finally:
        if server is not None:
            server.cleanup()


@log.command("check")
def log_check() -> None:
    """Exit 1 if the log holds transaction ids from another cluster's future (scans it)."""
    from continuity import log_origin

    ahead = _with_connection(log_origin.rows_ahead)
    if ahead:
        raise click.ClickException(str(log_origin.LogFromAnotherCluster(ahead)))
    click.echo("the event log's transaction ids are all in this cluster's past")


@log.command("repair")
def log_repair() -> None:
    """After restoring a dump into another cluster: make every restored event readable in
    order again. Run once, with every server stopped, as the tables' owner."""
    from continuity import log_origin

    repaired = _with_connection(log_origin.repair)
    click.echo(f"{repaired} events repaired; the log now belongs to this cluster")


@main.group()
def erasures() -> None:
    """The erasure journal: its state, its file, and reapplying it after a restore."""


def _with_journal(work: Callable[[asyncpg.Connection, Any, Settings], Awaitable[T]]) -> T:
    """Run `work(conn, vault, settings)` on the migrated schema without starting a Runtime,
    which refuses a restored database: reapplying is what makes it start again."""
    from continuity.db import close_pool, create_pool
    from continuity.db import migrate as apply
    from continuity.runtime import resolve_database, resolve_keyring
    from privacy.vault import KeyVault

    settings = _settings()
    url, server = resolve_database(settings)
    schema = settings.database_schema

    async def go() -> T:
        conn = await asyncpg.connect(url, server_settings={"search_path": schema})
        pool = await create_pool(url, schema, min_size=1, max_size=2)
        try:
            await apply(conn, schema)
            return await work(conn, KeyVault(pool, schema, resolve_keyring(settings)), settings)
        finally:
            await conn.close()
            await close_pool(pool)

    try:
        return asyncio.run(go())
    finally:
        if server is not None:
            server.cleanup()


@erasures.command("reapply")
@click.option(
    "--journal",
    "journals",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="A copy of the journal file to read besides CONTINUITY_ERASURE_JOURNAL's (repeat for"
    " several).",
)
@click.option(
    "--public-key",
    "key_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A journal public key (PEM, from `continuity erasures public-key`) to trust besides"
    " those the database holds: for a backup taken before the journal's key was created.",
)
def erasures_reapply(journals: tuple[Path, ...], key_files: tuple[Path, ...]) -> None:
    """After restoring a backup: destroy again every journaled subject's keys, projection rows,
    devices and handoff codes that came back, re-create their tombstones, suppress their
    identifiers again. Reads the journal from the database and the file together, and refuses
    (changing nothing) if an entry is forged or the chain is broken. Safe to run again."""
    from continuity import erasure_journal as ej
    from privacy.journal import JOURNAL_KEY, JournalInvalid
    from privacy.master_key import signing_key_id

    extra: dict[str, bytes] = {}
    for key_file in key_files:
        raw = _public_key(key_file)
        extra[signing_key_id(raw)] = raw

    async def go(conn: asyncpg.Connection, vault: Any, settings: Settings) -> list[str]:
        signer = await vault.signer(JOURNAL_KEY)
        configured = ej.journal_file(settings)
        sources = list(dict.fromkeys([configured, *journals]))
        files = {str(p): await asyncio.to_thread(ej.read_file, p) for p in sources}
        done = await ej.reapply(conn, signer, settings.database_schema, files, extra)
        lines = [
            f"{done.journaled} journaled subjects; {len(done.reshredded)} re-shredded"
            f" (data had come back): {done.keys_destroyed} keys destroyed,"
            f" {done.tombstones_recreated} tombstones re-created,"
            f" {done.projection_rows_deleted} projection rows deleted,"
            f" {done.devices_removed} devices and {done.handoff_codes_removed} handoff codes"
            f" removed, {done.identifiers_suppressed} identifiers suppressed",
            f"journal: {done.entries_restored} entries restored from the file,"
            f" {done.entries_rejournaled} subjects journaled anew",
        ]
        lines += [f"re-shredded {subject}" for subject in done.reshredded]
        if done.diverged_at is not None:
            lines.append(
                f"WARNING: a journal file disagrees with the database from entry"
                f" {done.diverged_at} on; every subject in either was re-shredded"
            )
        state = await ej.file_state(conn, configured)
        if state.ahead or state.diverged_at is not None:
            written = await asyncio.to_thread(
                ej.rewrite_file, configured, await ej.table_entries(conn)
            )
            lines.append(f"{configured} rewritten from the database ({written} entries)")
        else:
            written = await ej.catch_up_file(conn, configured)
            lines.append(f"{configured}: {written} entries appended; it is up to date")
        lines.append("this database is recorded as the schema's own: the server will start")
        return lines

    try:
        for line in _with_journal(go):
            click.echo(line)
    except JournalInvalid as exc:
        raise click.ClickException(f"REFUSED, nothing was changed: {exc}") from None
    except ej.JournalFileError as exc:
        raise click.ClickException(f"REFUSED, nothing was changed: {exc}") from None


def _public_key(path: Path) -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except ValueError:
        raise click.UsageError(f"{path} is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise click.UsageError(f"{path} is not an Ed25519 public key")
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@erasures.command("export")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
def erasures_export(file: Path | None) -> None:
    """Rewrite FILE (default: CONTINUITY_ERASURE_JOURNAL's file) from the database's journal.
    Refused if FILE holds entries the database lacks: run `erasures reapply` then."""
    from continuity import erasure_journal as ej

    async def go(conn: asyncpg.Connection, _vault: Any, settings: Settings) -> str:
        target = file or ej.journal_file(settings)
        state = await ej.file_state(conn, target)
        if state.ahead or state.diverged_at is not None:
            raise click.ClickException(
                f"{target} holds entries the database lacks (up to {state.file_head}; the"
                f" database has {state.table_head}): run `continuity erasures reapply` first"
            )
        written = await asyncio.to_thread(ej.rewrite_file, target, await ej.table_entries(conn))
        return f"{written} entries written to {target}"

    try:
        click.echo(_with_journal(go))
    except ej.JournalFileError as exc:
        raise click.ClickException(str(exc)) from None


@erasures.command("status")
def erasures_status() -> None:
    """The journal in the database and in its file: exit 1 if the file is behind or ahead, or
    if the database was restored and `erasures reapply` has not run."""
    from continuity import erasure_journal as ej

    async def go(conn: asyncpg.Connection, _vault: Any, settings: Settings) -> tuple[bool, str]:
        target = ej.journal_file(settings)
        try:
            state = await ej.file_state(conn, target)
        except ej.JournalFileError as exc:
            return False, f"the journal file is unusable: {exc}"
        lines = [f"database: {state.table_head} entries; {target}: {state.file_head} entries"]
        fine = True
        try:
            await ej.check(conn, target)
        except ej.ErasuresNotReapplied as exc:
            lines.append(str(exc))
            fine = False
        if state.behind:
            lines.append(
                f"the file is {state.behind} entries behind: fix what keeps it from being"
                " written (the server's log says), then run `continuity erasures export`"
            )
            fine = False
        return fine, "\n".join(lines)

    fine, text = _with_journal(go)
    click.echo(text)
    if not fine:
        sys.exit(1)


@erasures.command("public-key")
def erasures_public_key() -> None:
    """Print the PEM public key journal entries are signed with: keep it with the journal file,
    so a backup taken before the key existed can still be reapplied (`--public-key`)."""
    from privacy.journal import JOURNAL_KEY

    async def go(_conn: asyncpg.Connection, vault: Any, _settings: Settings) -> str:
        signer = await vault.signer(JOURNAL_KEY)
        pem: str = signer.public_key_pem()
        return pem

    click.echo(_with_journal(go), nl=False)


@main.group()
def projections() -> None:
    """The read models folded from the log: list them, see where they stand, rebuild one."""


@projections.command("list")
def projections_list() -> None:
    """Each projection: how it runs, what it consumes, the tables it owns."""
    from continuity.runtime import Runtime

    async def go(runtime: Runtime) -> list[str]:
        return [
            f"{p.name}\t{p.mode}\tversion {p.version}\ttopics: {', '.join(p.topics) or 'all'}"
            f"\ttables: {', '.join(t.name for t in p.tables)}"
            for p in runtime.projections
        ]

    for line in _with_runtime(_settings(), go, build_stale=False):
        click.echo(line)


@projections.command("status")
@click.argument("name", required=False)
def projections_status(name: str | None) -> None:
    """Where each projection (or NAME) stands: its rows' version, position and lag."""
    from continuity.projection_status import status
    from continuity.registry import UnknownProjection
    from continuity.runtime import Runtime

    async def go(runtime: Runtime) -> list[str]:
        chosen = [runtime.projections.get(name)] if name else list(runtime.projections)
        lines = []
        for projection in chosen:
            s = await status(runtime.pool, projection)
            rows = ", ".join(f"{t} {'missing' if n is None else n}" for t, n in s.rows.items())
            built = s.built_at.isoformat(timespec="seconds") if s.built_at else "never"
            lines.append(
                f"{s.name}: {s.state}; {s.mode}, version {s.version}; at position {s.position}"
                f" of {s.head}, {s.behind} events behind; rows: {rows}; last rebuilt: {built}"
            )
        return lines

    try:
        for line in _with_runtime(_settings(), go, build_stale=False):
            click.echo(line)
    except UnknownProjection as exc:
        raise click.UsageError(str(exc)) from None


@projections.command("rebuild")
@click.argument("name")
def projections_rebuild(name: str) -> None:
    """Rebuild NAME from the log into side tables, then switch over atomically: the current
    rows are served until the switch, and writes go on meanwhile."""
    from continuity.registry import UnknownProjection
    from continuity.runtime import Runtime

    async def go(runtime: Runtime) -> str:
        projection = runtime.projections.get(name)
        head = await runtime.store.max_notification_id() or 0

        def shown(events: int | None) -> str:
            return f"{events:,} events" if events is not None else ""

        with click.progressbar(
            length=max(head, 1), label=f"rebuilding {name}", item_show_func=shown
        ) as bar:

            def progress(events: int, position: int) -> None:
                bar.update(max(0, min(position, head) - bar.pos), events)

            rebuilt = await runtime.rebuilder.rebuild(projection, progress)
            bar.update(head - bar.pos)
        assert rebuilt is not None
        return (
            f"{name}: {rebuilt.events:,} events folded up to position {rebuilt.position} in"
            f" {rebuilt.seconds:.2f} s ({rebuilt.rate:,.0f} events/s); switched over"
        )

    try:
        click.echo(_with_runtime(_settings(), go, build_stale=False))
    except UnknownProjection as exc:
        raise click.UsageError(str(exc)) from None


@main.group()
def keys() -> None:
    """Master key operations."""


@keys.command("rotate")
def rotate() -> None:
    """Generate a new master key (key-file mode) and re-wrap every stored key under it."""
    from continuity.runtime import Runtime, master_key_path
    from privacy.master_key import Keyring, MasterKey, load_or_create_key_file, write_key_file

    settings = _settings()
    if settings.master_key:
        raise click.UsageError(
            "the master key comes from CONTINUITY_MASTER_KEY: set it to 'NEW,OLD' (base64) and"
            " run `continuity keys rewrap`, then drop OLD"
        )
    path = master_key_path(settings)
    old = load_or_create_key_file(path)
    both = Keyring([MasterKey.generate(), *old.keys])
    write_key_file(path, both)  # both keys on disk first: an interruption loses nothing

    async def go(runtime: Runtime) -> int:
        runtime.vault.wrapper = both
        return await runtime.vault.rewrap_all()

    count = _with_runtime(settings, go)
    write_key_file(path, Keyring([both.current]))
    click.echo(f"master key {both.current.id} is current; {count} keys re-wrapped")


@keys.command("rewrap")
def rewrap() -> None:
    """Re-wrap every stored key (subject and system keys) under the current master key."""
    from continuity.runtime import Runtime

    async def go(runtime: Runtime) -> int:
        return await runtime.vault.rewrap_all()

    count = _with_runtime(_settings(), go)
    click.echo(f"{count} keys re-wrapped")


if __name__ == "__main__":
    sys.exit(main())
