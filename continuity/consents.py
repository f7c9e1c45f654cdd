"""The consent service: a subject's choices recorded in their consent ledger, read back as the
session view folds them, and the Global Privacy Control signal honoured.

A change costs what an activity action costs: one query reads the retry status, the erasure
status and the session row (`continuity.commands.SessionLoad`); the `Consent` aggregate is
stood up from the row's consents; one append writes the events, the row and, in the same
transaction, the proofs (`continuity.consent_proofs`), which outlive an erasure. After a
concurrent append got in between, the stream is loaded from the log instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from uuid import UUID, uuid4

import msgspec

from aggregates.consent import DEFAULTS, PURPOSES, SALE_SHARE, Consent, ConsentState
from aggregates.errors import InvalidValue
from aggregates.metadata import EventMeta
from continuity.commands import Commands, Loaded, SessionLoad, is_retry
from continuity.consent_proofs import ConsentProofs, Proof
from continuity.errors import PreconditionFailed, SubjectErased
from continuity.repository import IdempotencyKey, Repository
from continuity.subject_views import SealedViews
from continuity.turns import Turns
from privacy.vault import KeyVault
from projections.consent import ConsentEntry, Consents
from projections.session import SessionView


@dataclass(frozen=True)
class Choice:
    purpose: str
    given: bool
    policy_version: str | None


@dataclass(frozen=True)
class Record:
    """Recording `choices` (in order) from `source` as one request. `fields` names, for each,
    the input an error should point at."""

    choices: tuple[Choice, ...]
    source: str
    fields: tuple[str, ...] = ()

    @property
    def fingerprint(self) -> bytes:
        described = [[c.purpose, c.given, c.policy_version] for c in self.choices]
        return msgspec.msgpack.encode(["consent", "record", self.source, described])

    def run(self, consent: Consent) -> None:
        for n, choice in enumerate(self.choices):
            where = self.fields[n] if n < len(self.fields) else "purpose"
            consent.record(
                choice.purpose, choice.given, choice.policy_version, self.source, field=where
            )


@dataclass(frozen=True)
class Ledger:
    """A subject's consents now: each purpose's last recorded choice (absent: its default
    holds), and the version of their ledger (0: nothing recorded), which `If-Match` names."""

    version: int
    consents: Consents

    def given(self, purpose: str) -> bool:
        entry = self.consents.get(purpose)
        return entry.given if entry is not None else DEFAULTS[purpose]

    def entry(self, purpose: str) -> ConsentEntry | None:
        return self.consents.get(purpose)


@dataclass(frozen=True)
class Changed:
    """The ledger after a request, where its events went, and whether it was a retry."""

    ledger: Ledger
    view: SessionView
    positions: list[int] = field(default_factory=list)
    duplicate: bool = False


def stood_up(subject_id: UUID, view: SessionView, version: int | None) -> Consent:
    """The subject's ledger at `version` (None: a new one), stood up from their session view."""
    if version is None:
        return Consent(subject_id=subject_id)
    given = {purpose: entry.given for purpose, entry in view.consents.items()}
    return Consent.restore(Consent.create_id(subject_id), version, ConsentState(subject_id, given))


def ledger_of(subject_id: UUID, view: SessionView, streams: dict[UUID, int]) -> Ledger:
    return Ledger(streams.get(Consent.create_id(subject_id), 0), view.consents)


class ConsentService:
    def __init__(
        self,
        repository: Repository,
        sessions: SealedViews[SessionView],
        vault: KeyVault,
        proofs: ConsentProofs,
        *,
        turns: Turns | None = None,
    ) -> None:
        self.repository = repository
        self.sessions = sessions
        self.vault = vault
        self.proofs = proofs
        self.pool = repository.store.pool
        self.commands = Commands(self.pool, vault, turns or Turns())
        self._load = SessionLoad(self.pool, sessions)

    async def current(self, subject_id: UUID) -> Ledger:
        """The subject's consents as their session view folds them; SubjectErased if erased."""
        read = (await self.sessions.read(self.pool, [subject_id]))[subject_id]
        if not read.readable:
            raise SubjectErased(subject_id)
        if read.folded is None:
            if await self.vault.erased_among([subject_id]):
                raise SubjectErased(subject_id)
            return Ledger(0, {})
        return ledger_of(subject_id, read.folded.state, read.folded.streams)

    async def record(
        self,
        subject_id: UUID,
        meta: EventMeta,
        request: Record,
        *,
        idempotency_key: UUID,
        if_match: int | None = None,
    ) -> Changed:
        """Record the request's choices in one append. InvalidValue for a purpose that does
        not exist or essential withdrawn (nothing is recorded); PreconditionFailed when
        `if_match` is not the ledger's version. A retry (same key) records nothing again."""
        changed = await self.run(
            subject_id,
            meta,
            idempotency_key,
            request.fingerprint,
            request.run,
            if_match=if_match,
        )
        assert changed is not None
        return changed

    async def honour_gpc(self, subject_id: UUID, meta: EventMeta) -> bool:
        """Record an opt-out of sale/share from the Global Privacy Control signal, unless one
        is recorded already; whether this recorded it. Two requests carrying the signal at
        once record it once: the second's append conflicts with the first's, and run again it
        finds the opt-out recorded."""
        opt_out = Record((Choice(SALE_SHARE, False, None),), "gpc")
        recorded = await self.run(
            subject_id,
            meta,
            uuid4(),
            opt_out.fingerprint,
            opt_out.run,
            unless=_sale_share_withdrawn,
        )
        return recorded is not None and not recorded.duplicate

    async def history(self, subject_id: UUID) -> list[Proof]:
        """Every choice the subject made, oldest first, from the proofs: readable after the
        subject's erasure too."""
        return await self.proofs.of_subject(self.pool, subject_id)

    async def run(
        self,
        subject_id: UUID,
        meta: EventMeta,
        idempotency_key: UUID,
        fingerprint: bytes,
        command: Callable[[Consent], None],
        *,
        if_match: int | None = None,
        unless: Callable[[SessionView], bool] | None = None,
    ) -> Changed | None:
        """Run `command` on the subject's ledger in their turn, tried again on the fresh state
        after a concurrent change; None if `unless` says the view needs nothing recorded."""
        tries = 0

        async def attempt() -> Changed | None:
            nonlocal tries
            tries += 1
            stream_id = Consent.create_id(subject_id)
            request = IdempotencyKey(subject_id, idempotency_key)
            loaded = await self._load(request)
            if loaded.erased:
                raise SubjectErased(subject_id)
            if await is_retry(self.vault, request, fingerprint, loaded.digest):
                assert loaded.position is not None
                ledger = ledger_of(subject_id, loaded.view, _streams(loaded))
                return Changed(ledger, loaded.view, [loaded.position], duplicate=True)
            version = loaded.version_of(stream_id)
            if if_match is not None and if_match != (version or 0):
                raise PreconditionFailed(str(if_match), version or 0, "consent ledger")
            if unless is not None and unless(loaded.view):
                return None
            consent = await self.stream(subject_id, loaded, from_view=tries == 1)
            command(consent)
            saved = await self.repository.save(
                consent,
                subject_id,
                meta,
                request,
                fingerprint,
                reads={self.sessions.name: {subject_id: loaded.session}},
            )
            view = self.sessions.written(saved.projected).get(subject_id)
            if view is None:  # folded by the append's own transaction: read it back
                return Changed(await self.current(subject_id), await self._view(subject_id))
            return Changed(Ledger(consent.version, view.consents), view, saved.positions)

        return await self.commands.run(subject_id, attempt)

    async def stream(self, subject_id: UUID, loaded: Loaded, *, from_view: bool) -> Consent:
        """The subject's ledger: stood up from the session row `loaded` read (`from_view`), or
        loaded from the log once that row turned out to be behind; a new one if none."""
        version = loaded.version_of(Consent.create_id(subject_id))
        if from_view:
            return stood_up(subject_id, loaded.view, version)
        stored = await self.repository.load(Consent.create_id(subject_id), Consent)
        return stored if stored is not None else Consent(subject_id=subject_id)

    async def _view(self, subject_id: UUID) -> SessionView:
        view = await self.sessions.load(self.pool, subject_id)
        if view is None:
            raise SubjectErased(subject_id)
        return view


def _streams(loaded: Loaded) -> dict[UUID, int]:
    folded = loaded.session.folded
    return dict(folded.streams) if folded is not None else {}


def _sale_share_withdrawn(view: SessionView) -> bool:
    entry = view.consents.get(SALE_SHARE)
    return entry is not None and not entry.given


def choices(
    given: dict[str, bool], policy_version: str | None
) -> tuple[tuple[Choice, ...], tuple[str, ...]]:
    """Several purposes' choices in the order purposes are listed (`PURPOSES`), then any
    unknown one (which the ledger refuses, naming it)."""
    ordered = sorted(
        given, key=lambda p: (PURPOSES.index(p) if p in PURPOSES else len(PURPOSES), p)
    )
    return (
        tuple(Choice(p, given[p], policy_version) for p in ordered),
        tuple(f"consents.{p}" for p in ordered),
    )


def one(purpose: str, given: bool, policy_version: str | None, source: str) -> Record:
    return Record((Choice(purpose, given, policy_version),), source)


def several(given: dict[str, bool], policy_version: str | None, source: str) -> Record:
    """InvalidValue naming `consents` if `given` names no purpose."""
    if not given:
        raise InvalidValue("name at least one purpose", "consents")
    listed, fields = choices(given, policy_version)
    return Record(listed, source, fields)
