"""The activity service: what a customer's devices viewed, searched and are on, recorded only
while the customer consents to personalization.

An action costs what a cart action costs, whatever the history: one query reads the retry
status, the erasure status and the session row (`continuity.commands.SessionLoad`); the
`Activity` aggregate (two fields) is stood up from that row, which folds the activity stream
in the same commit as its events; one append writes the events and the row. Only after a
concurrent append got in between is the stream loaded from the log (from its snapshot, taken
every `continuity.snapshots.EVERY` events, and the events after it).

Personalization lives in one place: the subject's consent ledger (`aggregates.consent`),
folded into the session view's `consents`, read by `allows_personalization` (for this service,
`personalization_allowed`, a sign-in's merge and an offline batch). The `Activity` aggregate's
own `personalization` is what the ledger said when it was stood up; `set_personalization`
records a choice in the ledger (source `preferences`), as `PUT /v1/me/preferences` always did.
A refusal recorded before the ledger existed (`Activity.PersonalizationSet`) still counts: the
view folds it as a personalization record.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from uuid import UUID

import msgspec

from aggregates.activity import PERSONALIZATION, Activity, ActivityState, Item
from aggregates.consent import Consent
from aggregates.metadata import EventMeta
from continuity.commands import Commands, Loaded, SessionLoad, is_retry
from continuity.consents import ConsentService
from continuity.errors import SubjectErased
from continuity.repository import IdempotencyKey, Repository
from continuity.subject_views import SealedViews
from continuity.turns import Turns
from privacy.vault import KeyVault
from projections import consent
from projections.session import SessionView

Command = Callable[[Activity], None]


@dataclass(frozen=True)
class Recorded:
    """The session view after the request, where its events went (`positions`), and whether
    it was a retry of a request recorded before (`duplicate`: `positions` then holds the
    position of the first one's first event)."""

    view: SessionView
    positions: list[int] = field(default_factory=list)
    duplicate: bool = False


@dataclass(frozen=True)
class Record:
    """Recording `items` as one request: what `ActivityService.record` runs, and what an
    offline batch's activity action carries (`continuity.sync`). The same items give the same
    fingerprint either way, so a queued action sent online first is one request."""

    items: tuple[Item, ...]

    @property
    def fingerprint(self) -> bytes:
        described = [[type(item).__name__, item] for item in self.items]
        return msgspec.msgpack.encode(["activity", "record", described])

    def run(self, activity: Activity) -> None:
        activity.record(self.items)


@dataclass(frozen=True)
class SetPersonalization:
    """The subject's choice, as `ActivityService.set_personalization` records it in the
    consent ledger and an offline batch carries it (the same fingerprint and event either
    way)."""

    allowed: bool

    @property
    def fingerprint(self) -> bytes:
        return msgspec.msgpack.encode(["activity", "personalization", self.allowed])

    def run(self, consent: Consent) -> None:
        consent.record(PERSONALIZATION, self.allowed, None, "preferences")


ActivityCommand = Record | SetPersonalization


def allows_personalization(view: SessionView) -> bool:
    """Whether the subject of `view` consents to personalization (yes, until they refuse)."""
    return consent.given(view.consents, PERSONALIZATION)


def stood_up(subject_id: UUID, view: SessionView, version: int | None) -> Activity:
    """The subject's activity stream at `version` (None: a new one), stood up from their
    session view, which folds it in the same commit as its events."""
    if version is None:
        return Activity(subject_id=subject_id)
    state = ActivityState(subject_id, allows_personalization(view))
    return Activity.restore(Activity.create_id(subject_id), version, state)


class ActivityService:
    def __init__(
        self,
        repository: Repository,
        sessions: SealedViews[SessionView],
        vault: KeyVault,
        *,
        consents: ConsentService,
        turns: Turns | None = None,
    ) -> None:
        self.repository = repository
        self.sessions = sessions
        self.vault = vault
        self.consents = consents
        self.pool = repository.store.pool
        self.commands = Commands(self.pool, vault, turns or Turns())
        self._load = SessionLoad(self.pool, sessions)

    async def record(
        self,
        subject_id: UUID,
        meta: EventMeta,
        items: Sequence[Item],
        *,
        idempotency_key: UUID,
    ) -> Recorded:
        """Record `items` (in order, one event each) as one request; ConsentRequired while the
        subject refuses personalization (nothing is recorded), InvalidValue for an item the
        domain refuses. A retry (same key) is answered without recording anything again."""
        request = Record(tuple(items))
        return await self._run(subject_id, meta, idempotency_key, request.fingerprint, request.run)

    async def set_personalization(
        self, subject_id: UUID, meta: EventMeta, allowed: bool, *, idempotency_key: UUID
    ) -> Recorded:
        """Record the subject's choice in their consent ledger (each time they make it, so it
        is provable); a refusal also empties what the session view shows of their activity."""
        choice = SetPersonalization(allowed)
        changed = await self.consents.run(
            subject_id, meta, idempotency_key, choice.fingerprint, choice.run
        )
        assert changed is not None
        return Recorded(changed.view, changed.positions, changed.duplicate)

    async def personalization_allowed(self, subject_id: UUID) -> bool:
        """Whether the subject allows personalization (yes, until they refuse it)."""
        view = await self.sessions.load(self.pool, subject_id)
        if view is None:
            if await self.vault.erased_among([subject_id]):
                raise SubjectErased(subject_id)
            return True
        return allows_personalization(view)

    async def _run(
        self,
        subject_id: UUID,
        meta: EventMeta,
        idempotency_key: UUID,
        fingerprint: bytes,
        command: Command,
    ) -> Recorded:
        request = IdempotencyKey(subject_id, idempotency_key)
        tries = 0

        async def attempt() -> Recorded:
            nonlocal tries
            tries += 1
            loaded = await self._load(request)
            if loaded.erased:
                raise SubjectErased(subject_id)
            if await is_retry(self.vault, request, fingerprint, loaded.digest):
                assert loaded.position is not None
                return Recorded(loaded.view, [loaded.position], duplicate=True)
            activity = await self._activity(subject_id, loaded, from_view=tries == 1)
            command(activity)
            saved = await self.repository.save(
                activity,
                subject_id,
                meta,
                request,
                fingerprint,
                reads={self.sessions.name: {subject_id: loaded.session}},
            )
            written = self.sessions.written(saved.projected).get(subject_id)
            if written is None:  # folded in the append's own transaction: read it back
                return Recorded(await self._view(subject_id), saved.positions)
            return Recorded(written, saved.positions)

        return await self.commands.run(subject_id, attempt)

    async def _activity(self, subject_id: UUID, loaded: Loaded, *, from_view: bool) -> Activity:
        stream_id = Activity.create_id(subject_id)
        version = loaded.version_of(stream_id)
        return await self.stream(subject_id, loaded.view, version, from_view=from_view)

    async def stream(
        self, subject_id: UUID, view: SessionView, version: int | None, *, from_view: bool
    ) -> Activity:
        """The subject's activity stream: stood up from their session view (`from_view`; it
        has folded the stream up to `version`), or loaded from its snapshot and the log once
        the view turned out to be behind; a new one if the subject has none. Either way its
        personalization is the ledger's, as `view` has it (the append checks the view's row
        has not moved since, so a withdrawal in between refuses it)."""
        if from_view:
            return stood_up(subject_id, view, version)
        stored = await self.repository.load(Activity.create_id(subject_id), Activity)
        if stored is None:
            return Activity(subject_id=subject_id)
        stored.personalization = allows_personalization(view)  # the ledger's, not the stream's
        return stored

    async def _view(self, subject_id: UUID) -> SessionView:
        view = await self.sessions.load(self.pool, subject_id)
        if view is None:
            raise SubjectErased(subject_id)
        return view
