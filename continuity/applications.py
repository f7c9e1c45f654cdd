"""The application service: a customer's multi-step applications, one call per action.

Each action loads the application (its snapshot and the events after it), runs the command,
and appends its events with the session view's row in one commit, as the cart service does.
A retried request (same `Idempotency-Key`) is answered from what the first one recorded; a
command the customer's other device got ahead of is retried on the fresh state, unless the
request named the version it was based on (`If-Match`): then a stale version is
PreconditionFailed, carrying the application as it is now so the client can merge, except for
a draft whose fields no event after that version changed, which is no conflict and is saved.

An application idle for longer than the operator's limit expires on the next action: the
`ExpiredIdle` event is recorded (by the system) and the action is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import cast
from uuid import UUID, uuid5

import msgspec
from eventsourcing.domain import Aggregate

from aggregates.application import Application, Expired
from aggregates.errors import NotFound
from aggregates.forms import Answer
from aggregates.metadata import EventMeta
from continuity.commands import Commands
from continuity.errors import ConcurrencyConflict, PreconditionFailed, SubjectErased, ViewMoved
from continuity.form_catalog import FormCatalog
from continuity.repository import IdempotencyKey, Repository
from continuity.subject_views import SealedViews
from continuity.turns import Turns
from privacy.vault import KeyVault
from projections.application import ApplicationView
from projections.envelope import Envelope
from projections.session import SessionView

IDLE_LIMIT = timedelta(days=30)
"""How long an application may sit untouched before it expires, unless the operator says."""
SYSTEM = EventMeta("system", None, "system")
_EXPIRY = UUID("5d0f1c8a-3b7e-4e29-9f61-2a8c4d7b0e53")


@dataclass(frozen=True)
class Action:
    """A command on an application; `fingerprint` tells a retry from a reused key. A draft
    names its step and fields, so a stale If-Match conflicts only over the fields it writes."""

    run: Callable[[Application, date], None]
    fingerprint: bytes
    draft: tuple[str, list[str]] | None = field(default=None)


def save_draft(step: str, values: dict[str, Answer]) -> Action:
    return Action(
        lambda app, _: app.save_draft(step, values),
        msgspec.msgpack.encode(["application", "draft", step, values]),
        (step, sorted(values)),
    )


def complete_step(step: str, values: dict[str, Answer]) -> Action:
    return Action(
        lambda app, today: app.complete_step(step, values, today),
        msgspec.msgpack.encode(["application", "complete", step, values]),
    )


def go_back(step: str) -> Action:
    return Action(
        lambda app, _: app.go_back(step), msgspec.msgpack.encode(["application", "back", step])
    )


def submit() -> Action:
    return Action(lambda app, _: app.submit(), msgspec.msgpack.encode(["application", "submit"]))


def withdraw() -> Action:
    return Action(
        lambda app, _: app.withdraw(), msgspec.msgpack.encode(["application", "withdraw"])
    )


class ApplicationService:
    def __init__(
        self,
        repository: Repository,
        sessions: SealedViews[SessionView],
        vault: KeyVault,
        catalog: FormCatalog,
        *,
        idle_limit: timedelta = IDLE_LIMIT,
        turns: Turns | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.repository = repository
        self.sessions = sessions
        self.vault = vault
        self.catalog = catalog
        self.idle_limit = idle_limit
        self.turns = turns or Turns()
        self.clock = clock
        self.pool = repository.store.pool
        self.commands = Commands(self.pool, vault, self.turns)

    async def of_customer(self, subject_id: UUID) -> list[ApplicationView]:
        """The customer's applications as the session view has them (read-your-writes)."""
        view = await self.sessions.load(self.pool, subject_id)
        if view is None:
            if await self.vault.erased_among([subject_id]):
                raise SubjectErased(subject_id)
            return []
        return view.applications

    async def get(self, subject_id: UUID, application_id: UUID) -> Application:
        """The customer's application; NotFound if it is none of theirs."""
        app = await self.repository.load(application_id, Application)
        if app is None or app.subject_id != subject_id:
            raise NotFound("there is no such application", field="application_id")
        return app

    async def with_history(self, application_id: UUID) -> tuple[Application, list[Envelope]]:
        """Any customer's application (for an agent) and every event of it, with who did it,
        where and when; NotFound if there is none, SubjectErased after its subject's erasure."""
        envelopes = await self.repository.mapper.to_envelopes(
            await self.repository.store.select_events(application_id)
        )
        app: Application | None = None
        for envelope in envelopes:
            if envelope.event is None:
                raise SubjectErased(envelope.subject_id)
            mutated = cast(Aggregate.Event, envelope.event).mutate(app)
            if not isinstance(mutated, Application):
                raise NotFound("there is no such application", field="application_id")
            app = mutated
        if app is None:
            raise NotFound("there is no such application", field="application_id")
        return app, envelopes

    async def start(
        self, subject_id: UUID, meta: EventMeta, form_type: str, *, idempotency_key: UUID
    ) -> Application:
        """A new application on the newest version of `form_type`; a retried start (same key)
        answers the application the first one opened."""
        form = self.catalog.latest(form_type)
        if form is None:
            known = ", ".join(self.catalog.types)
            raise NotFound(f"there is no form {form_type!r} (there are: {known})", "form_type")
        request = IdempotencyKey(subject_id, idempotency_key)
        fingerprint = msgspec.msgpack.encode(["application", "start", form_type])
        async with self.turns.of(subject_id):
            existing = await self.repository.load(
                Application.create_id(subject_id, idempotency_key), Application
            )
            if existing is not None and await self.commands.recorded(request, fingerprint):
                return existing
            app = Application(subject_id=subject_id, form=form, start_key=idempotency_key)
            await self.repository.save(app, subject_id, meta, request, fingerprint)
            return app

    async def act(
        self,
        subject_id: UUID,
        meta: EventMeta,
        application_id: UUID,
        action: Action,
        *,
        idempotency_key: UUID,
        if_match: int | None = None,
    ) -> Application:
        """Run `action` on the customer's application and return it after; see the module's
        docstring for retries, If-Match and expiry."""
        request = IdempotencyKey(subject_id, idempotency_key)
        return await self.commands.run(
            subject_id,
            lambda: self._attempt(subject_id, meta, application_id, action, request, if_match),
        )

    async def _attempt(
        self,
        subject_id: UUID,
        meta: EventMeta,
        application_id: UUID,
        action: Action,
        request: IdempotencyKey,
        if_match: int | None,
    ) -> Application:
        app = await self.get(subject_id, application_id)
        if await self.commands.recorded(request, action.fingerprint):
            return app
        now = self.clock()
        if app.is_idle(now, self.idle_limit):
            await self._expire(app)
            raise Expired("the application expired after sitting idle; start a new one")
        if if_match is not None and if_match != app.version and conflicts(app, if_match, action):
            raise PreconditionFailed(str(if_match), app.version, "application", app)
        action.run(app, now.date())
        await self.repository.save(app, subject_id, meta, request, action.fingerprint)
        return app

    async def expire_idle(self, application_id: UUID) -> bool:
        """Expire the application if it has sat idle past the limit; whether it did. One the
        customer touched meanwhile, or whose customer was erased, is left alone."""
        app = await self.repository.load(application_id, Application)
        if app is None:
            return False
        async with self.turns.of(app.subject_id):
            try:
                app = await self.get(app.subject_id, application_id)
                if not app.is_idle(self.clock(), self.idle_limit):
                    return False
                await self._expire(app)
            except (ConcurrencyConflict, ViewMoved, SubjectErased):
                return False
        return True

    async def sweep(self, batch: int = 100) -> int:
        """Expire the applications the agents' queue shows idle past the limit (at most
        `batch`); how many it expired. Run by every server process now and then: two
        expiring one application at once record it once (the expiry's id is fixed)."""
        since = self.clock() - self.idle_limit
        rows = await self.pool.fetch(
            "SELECT application_id FROM application_queue"
            " WHERE status = 'in_progress' AND last_activity <= $1"
            " ORDER BY last_activity LIMIT $2",
            since,
            batch,
        )
        expired = 0
        for row in rows:
            expired += await self.expire_idle(row["application_id"])
        return expired

    async def _expire(self, app: Application) -> None:
        app.expire()
        key = IdempotencyKey(app.subject_id, uuid5(_EXPIRY, str(app.id)))
        await self.repository.save(app, app.subject_id, SYSTEM, key, b"expire")


def conflicts(app: Application, based_on: int, action: Action) -> bool:
    """Whether a request based on version `based_on` conflicts with what came after it: any
    change does, except for a draft whose own fields nothing after it changed."""
    if action.draft is None:
        return True
    step, fields = action.draft
    return bool(app.changed_since(based_on, step, fields))
