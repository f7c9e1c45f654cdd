"""Offline sync: the actions a device queued offline, flushed in one request, applied in one append.

Each action carries the device's `event_id` (its idempotency key: the action's events get the
ids and digests the same action sent alone with that `Idempotency-Key` gets), its target, the
version of the target the device last saw (`base_version`) and when it happened on the device.
A batch runs in the subject's turn (`Commands.run`): one query finds the actions recorded
already (duplicates, answered with their original position), each kind of target loads its
aggregates once (`SyncService.targets`, one entry a kind: cart, application, conversation,
activity),
the actions apply in the order given, each applied or rejected on its own, and every applied
one's events go into one append (`UnitOfWork.claim`). A concurrent change by another request
runs the whole batch again on the fresh state. docs/sync.md has the rules: which actions
commute with a change the device had not seen, and which conflict.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol, cast
from uuid import UUID

import msgspec
from eventsourcing.domain import Aggregate

from aggregates.activity import Activity
from aggregates.application import Application, Expired
from aggregates.cart import Cart
from aggregates.consent import Consent
from aggregates.conversation import Conversation
from aggregates.errors import DomainError, InvalidValue, NotFound
from aggregates.forms import Answer
from aggregates.metadata import EventMeta
from continuity import activity, applications, carts, conversations
from continuity.activity import ActivityService
from continuity.applications import ApplicationService
from continuity.carts import CartService
from continuity.commands import Commands, Loaded
from continuity.conversations import ConversationService
from continuity.errors import (
    ContinuityError,
    DuplicateEvent,
    EventIdReused,
    PreconditionFailed,
    SubjectErased,
)
from continuity.registry import Projected, Reads
from continuity.repository import IdempotencyKey, Repository, UnitOfWork
from continuity.subject_views import Read, SealedViews
from projections.cart import CartView
from projections.session import SessionView

MAX_AHEAD = timedelta(minutes=10)
"""How far past the server's clock a device's `occurred_at` may be (clocks drift)."""
MAX_AGE = timedelta(days=30)
"""How long ago an action may have happened: an older queue is not applied blindly."""


class Operation(Protocol):
    """A target's command (`carts.Command`, `applications.Action`, `conversations.Action`)."""

    @property
    def fingerprint(self) -> bytes: ...


@dataclass(frozen=True)
class SyncAction:
    """One queued action: `target` names its kind (a key of the targets), `target_id` which one
    (None for the customer's cart)."""

    event_id: UUID
    target: str
    target_id: UUID | None
    base_version: int
    occurred_at: datetime
    operation: Operation


@dataclass(frozen=True)
class Applied:
    position: int
    """The log position of the action's first event."""
    version: int
    """The target's version after the action."""


@dataclass(frozen=True)
class Duplicate:
    position: int
    """The log position of the action's first event, recorded by an earlier request."""


@dataclass(frozen=True)
class Rejected:
    error: DomainError | ContinuityError
    current: object = None
    """The target as it is after the batch (`CartNow`, `ApplicationNow`, `ConversationNow`), to
    reconcile with; None if there is no such target."""


Outcome = Applied | Duplicate | Rejected


class Conflict(PreconditionFailed):
    """An action that does not commute with what changed after its `base_version` (412)."""

    def __init__(
        self, action: SyncAction, current: int, detail: str, fields: Sequence[str] = ()
    ) -> None:
        super().__init__(
            str(action.base_version),
            current,
            action.target,
            detail=detail,
            field=fields[0] if fields else "base_version",
        )
        self.fields = list(fields)


@dataclass(frozen=True)
class CartNow:
    cart: CartView | None
    """None: the customer has no cart."""


@dataclass(frozen=True)
class ApplicationNow:
    """An application as it is, with the current values of the fields an action conflicted
    over (`step.field`)."""

    application_id: UUID
    version: int
    status: str
    current_step: str | None
    values: dict[str, Answer] = field(default_factory=dict)


@dataclass(frozen=True)
class ConversationNow:
    conversation_id: UUID
    version: int
    status: str


@dataclass(frozen=True)
class ActivityNow:
    personalization: bool
    """False: the customer refuses personalization, so no activity is recorded."""


@dataclass(frozen=True)
class Batch:
    """What every target of one batch starts from."""

    subject_id: UUID
    now: datetime
    fresh: bool
    """Read aggregates from the log, not the views: a concurrent change got in between."""
    session: Read[SessionView]


class TargetBatch(Protocol):
    """One batch's actions on one kind of target, loaded once."""

    def apply(self, action: SyncAction) -> Aggregate:
        """Run `action`; the aggregate it changed. A DomainError or PreconditionFailed refuses
        it, with nothing changed."""

    async def settle(self, projected: Projected) -> None:
        """After the append (`projected`: what the inline views folded): get ready to answer
        `current`."""

    def current(self, action: SyncAction, error: Exception) -> object:
        """The action's target as it is now, for a rejected action to reconcile with."""


class Target(Protocol):
    async def begin(self, batch: Batch, actions: Sequence[SyncAction]) -> TargetBatch:
        """Load what `actions` (this kind's, in order) need."""


class SyncService:
    def __init__(
        self,
        repository: Repository,
        sessions: SealedViews[SessionView],
        commands: Commands,
        targets: Mapping[str, Target],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.repository = repository
        self.sessions = sessions
        self.commands = commands
        self.targets = dict(targets)
        self.clock = clock

    async def apply(
        self, subject_id: UUID, meta: EventMeta, actions: Sequence[SyncAction]
    ) -> list[Outcome]:
        """Each action's outcome, in order; see the module's docstring."""
        unknown = {a.target for a in actions} - self.targets.keys()
        if unknown:
            raise ValueError(f"no sync target {', '.join(sorted(unknown))}")
        if await self.commands.vault.erased_among([subject_id]):
            raise SubjectErased(subject_id)
        tries = 0

        async def attempt() -> list[Outcome]:
            nonlocal tries
            tries += 1
            return await self._attempt(subject_id, meta, actions, fresh=tries > 1)

        # A concurrent request that recorded some of this batch's actions makes its append
        # refuse them whole: run again, and they are duplicates.
        return await self.commands.run(subject_id, attempt, (EventIdReused, DuplicateEvent))

    async def _attempt(
        self, subject_id: UUID, meta: EventMeta, actions: Sequence[SyncAction], fresh: bool
    ) -> list[Outcome]:
        now = self.clock()
        keys = [IdempotencyKey(subject_id, a.event_id) for a in actions]
        recorded = await self.commands.recorded_at(
            [(k, a.operation.fingerprint) for k, a in zip(keys, actions, strict=True)]
        )
        outcomes: list[Outcome | None] = [None] * len(actions)
        first: dict[UUID, int] = {}
        repeats: dict[int, int] = {}
        todo: list[int] = []
        for i, (action, found) in enumerate(zip(actions, recorded, strict=True)):
            seen = first.setdefault(action.event_id, i)
            if isinstance(found, EventIdReused):
                outcomes[i] = Rejected(found)
            elif found is not None:
                outcomes[i] = Duplicate(found)
            elif seen != i:
                same = actions[seen].operation.fingerprint == action.operation.fingerprint
                if same:
                    repeats[i] = seen
                else:
                    outcomes[i] = Rejected(EventIdReused(action.event_id))
            elif (refused := _when_refused(action.occurred_at, now)) is not None:
                outcomes[i] = Rejected(refused)
            else:
                todo.append(i)
        if todo:
            await self._apply(subject_id, meta, actions, keys, todo, outcomes, now, fresh)
        for i, seen in repeats.items():
            earlier = outcomes[seen]
            outcomes[i] = Duplicate(earlier.position) if isinstance(earlier, Applied) else earlier
        answered = [outcome for outcome in outcomes if outcome is not None]
        assert len(answered) == len(actions)
        return answered

    async def _apply(
        self,
        subject_id: UUID,
        meta: EventMeta,
        actions: Sequence[SyncAction],
        keys: Sequence[IdempotencyKey],
        todo: Sequence[int],
        outcomes: list[Outcome | None],
        now: datetime,
        fresh: bool,
    ) -> None:
        """Apply the actions `todo` (indexes into `actions`) in one append; set their outcomes."""
        reads = await self._reads(subject_id)
        session = cast(Read[SessionView], reads[self.sessions.name][subject_id])
        batch = Batch(subject_id, now, fresh, session)
        batches = {
            kind: await self.targets[kind].begin(
                batch, [actions[i] for i in todo if actions[i].target == kind]
            )
            for kind in dict.fromkeys(actions[i].target for i in todo)
        }
        work = UnitOfWork()
        changed: dict[int, Aggregate] = {}
        versions: dict[int, int] = {}
        refused: dict[int, DomainError | PreconditionFailed] = {}
        for i in todo:
            action = actions[i]
            try:
                aggregate = batches[action.target].apply(action)
            except (DomainError, PreconditionFailed) as error:
                refused[i] = error
                continue
            if id(aggregate) not in changed:
                changed[id(aggregate)] = aggregate
                work.add(aggregate, subject_id, meta)
            occurred = msgspec.structs.replace(meta, occurred_at=action.occurred_at)
            work.claim(aggregate, keys[i], action.operation.fingerprint, occurred)
            versions[i] = aggregate.version
        saved = await self.repository.commit(work, None, b"", reads=reads)
        positions = dict(zip(saved.event_ids, saved.positions, strict=True))
        for i, version in versions.items():
            outcomes[i] = Applied(positions[keys[i].first], version)
        for kind in dict.fromkeys(actions[i].target for i in refused):
            await batches[kind].settle(saved.projected)
        for i, refusal in refused.items():
            current = batches[actions[i].target].current(actions[i], refusal)
            outcomes[i] = Rejected(refusal, current)

    async def _reads(self, subject_id: UUID) -> Reads:
        """The inline views' rows of the subject, read once: the cart is stood up from the
        session view's, and the append computes every view's new rows from them."""
        pool = self.repository.store.pool
        inline = self.repository.inline
        reads = await inline.read_inline(pool, [subject_id]) if inline is not None else None
        if reads is None or self.sessions.name not in reads:
            return {
                **(reads or {}),
                self.sessions.name: await self.sessions.read(pool, [subject_id]),
            }
        return reads


def _when_refused(occurred_at: datetime, now: datetime) -> InvalidValue | None:
    if occurred_at > now + MAX_AHEAD:
        return InvalidValue(
            f"occurred_at is more than {MAX_AHEAD.seconds // 60} minutes ahead of the server's"
            " clock",
            field="occurred_at",
        )
    if occurred_at < now - MAX_AGE:
        return InvalidValue(
            f"occurred_at is more than {MAX_AGE.days} days ago: the action is too old to apply",
            field="occurred_at",
        )
    return None


# -- the targets -------------------------------------------------------------------------------


class CartTarget:
    """The customer's current cart (`target_id` None); its commands are `carts.Command`s."""

    def __init__(self, carts: CartService) -> None:
        self.carts = carts

    async def begin(self, batch: Batch, actions: Sequence[SyncAction]) -> TargetBatch:
        cart = await self.carts.cart_of(batch.subject_id, batch.session, not batch.fresh)
        started = _CartBatch(self.carts, batch, cart)
        await started.read_changes(actions)
        return started


class _CartBatch:
    def __init__(self, service: CartService, batch: Batch, cart: Cart | None) -> None:
        self.service = service
        self.batch = batch
        self.cart = cart
        self.start = {cart.id: cart.version} if cart is not None else {}
        """Each cart's version before the batch: changes up to it are what the device missed."""
        self.changed: dict[str, int] = {}
        """sku -> the last version before the batch that changed its line."""
        self.view: CartView | None = None

    async def read_changes(self, actions: Sequence[SyncAction]) -> None:
        """The versions of the lines changed after the oldest base_version of an action that
        touches a line: one read of the log, only when an action is stale."""
        cart = self.cart
        if cart is None:
            return
        bases = [
            a.base_version
            for a in actions
            if _command(a).method in ("change_quantity", "remove_item")
            and a.base_version < cart.version
        ]
        if not bases:
            return
        repository = self.service.repository
        records = await repository.store.select_events(cart.id, gt=min(bases), lte=cart.version)
        for envelope in await repository.mapper.to_envelopes(records):
            sku = getattr(envelope.event, "sku", None)
            if isinstance(sku, str):
                self.changed[sku] = envelope.version

    def apply(self, action: SyncAction) -> Aggregate:
        command = _command(action)
        cart = self.cart
        base = action.base_version
        opens = command.method == "add_item" and (
            cart is None or (cart.closed and (base == 0 or base >= cart.version))
        )
        if opens:
            cart = self.service.next_cart(self.batch.subject_id, cart, command)
        elif cart is None:
            raise NotFound("there is no open cart", field=None)
        elif not cart.closed:
            self._check(cart, action, command)
        command(cart)  # a checked-out cart refuses it: 409, with the cart as it is
        if opens:
            self.cart = cart
            self.start[cart.id] = 0
        return cart

    def _check(self, cart: Cart, action: SyncAction, command: carts.Command) -> None:
        """Refuse what does not commute with the changes after base_version the device had
        not seen (those before the batch: the batch's own earlier actions are the device's)."""
        start = self.start[cart.id]
        base = action.base_version
        if command.method == "add_item" or base == start:
            return
        if base > start:
            raise Conflict(
                action, cart.version, f"base_version {base} is ahead of the cart's {start}"
            )
        if command.method == "checkout":
            raise Conflict(
                action,
                cart.version,
                f"the cart changed after version {base}: check out what it holds now",
            )
        sku = str(command.args[0])
        if self.changed.get(sku, 0) > base:
            raise Conflict(
                action, cart.version, f"item {sku!r} changed after version {base}", ["sku"]
            )

    async def settle(self, projected: Projected) -> None:
        written = self.service.sessions.written(projected).get(self.batch.subject_id)
        if written is not None:
            self.view = written.cart
        elif self.cart is None or self.cart.version == self.start.get(self.cart.id):
            folded = self.batch.session.folded
            self.view = folded.state.cart if folded is not None else None
        else:  # the append was an identical one's retry: read what it wrote
            self.view = await self.service.cart(self.batch.subject_id)

    def current(self, action: SyncAction, error: Exception) -> object:
        return CartNow(self.view)


def _command(action: SyncAction) -> carts.Command:
    command = action.operation
    if not isinstance(command, carts.Command):
        raise TypeError(f"a cart action needs a cart command, not {command!r}")
    return command


class ApplicationTarget:
    """One of the customer's applications (`target_id`); commands are `applications.Action`s."""

    def __init__(self, service: ApplicationService) -> None:
        self.service = service

    async def begin(self, batch: Batch, actions: Sequence[SyncAction]) -> TargetBatch:
        ids = [a.target_id for a in actions if a.target_id is not None]
        found = await self.service.repository.load_many(ids, Application)
        mine = {i: app for i, app in found.items() if app.subject_id == batch.subject_id}
        return _ApplicationBatch(self.service, batch, mine)


class _ApplicationBatch:
    def __init__(
        self, service: ApplicationService, batch: Batch, apps: dict[UUID, Application]
    ) -> None:
        self.service = service
        self.batch = batch
        self.apps = apps
        self.before: dict[UUID, Application] = {}
        """Each application as it was before the batch's first action on it."""

    def apply(self, action: SyncAction) -> Aggregate:
        command = action.operation
        if not isinstance(command, applications.Action):
            raise TypeError(f"an application action needs an application command: {command!r}")
        app = self._app(action)
        before = self.before.setdefault(
            app.id, Application.restore(app.id, app.version, app.snapshot_state())
        )
        if app.is_idle(self.batch.now, self.service.idle_limit):
            raise Expired("the application expired after sitting idle; start a new one")
        base = action.base_version
        if base > before.version:
            detail = f"base_version {base} is ahead of the application's {before.version}"
            raise Conflict(action, app.version, detail)
        if base < before.version and applications.conflicts(before, base, command):
            fields = (
                [f"{command.draft[0]}.{f}" for f in before.changed_since(base, *command.draft)]
                if command.draft is not None
                else []
            )
            changed = ", ".join(fields) if fields else "the application"
            raise Conflict(action, app.version, f"{changed} changed after version {base}", fields)
        command.run(app, self.batch.now.date())
        return app

    def _app(self, action: SyncAction) -> Application:
        app = self.apps.get(action.target_id) if action.target_id is not None else None
        if app is None:
            raise NotFound("there is no such application", field="id")
        return app

    async def settle(self, projected: Projected) -> None:
        return None

    def current(self, action: SyncAction, error: Exception) -> object:
        app = self.apps.get(action.target_id) if action.target_id is not None else None
        if app is None:
            return None
        fields = error.fields if isinstance(error, Conflict) else []
        values = {}
        for name in fields:
            step, _, field_name = name.partition(".")
            values[name] = app.answers(step).get(field_name)
        return ApplicationNow(app.id, app.version, app.status, app.current, values)


class ConversationTarget:
    """One of the customer's conversations (`target_id`); commands are `conversations.Action`s.
    Its actions are checked by the conversation's state, never by base_version: turns commute."""

    def __init__(self, service: ConversationService) -> None:
        self.service = service

    async def begin(self, batch: Batch, actions: Sequence[SyncAction]) -> TargetBatch:
        ids = [a.target_id for a in actions if a.target_id is not None]
        found = await self.service.repository.load_many(ids, Conversation)
        mine = {i: c for i, c in found.items() if c.subject_id == batch.subject_id}
        return _ConversationBatch(mine)


class _ConversationBatch:
    def __init__(self, found: dict[UUID, Conversation]) -> None:
        self.found = found

    def apply(self, action: SyncAction) -> Aggregate:
        command = action.operation
        if not isinstance(command, conversations.Action):
            raise TypeError(f"a conversation action needs a conversation command: {command!r}")
        conversation = self.found.get(action.target_id) if action.target_id else None
        if conversation is None:
            raise NotFound("there is no such conversation", field="id")
        command.run(conversation)
        return conversation

    async def settle(self, projected: Projected) -> None:
        return None

    def current(self, action: SyncAction, error: Exception) -> object:
        found = self.found.get(action.target_id) if action.target_id else None
        if found is None:
            return None
        return ConversationNow(found.id, found.version, found.status)


class ActivityTarget:
    """The customer's activity (`target_id` None); commands are `activity.Record`s and
    `activity.SetPersonalization`s (recorded in the consent ledger, as the preferences route
    does). Activity has nothing to conflict over: every item commutes, whatever `base_version`
    says, and is refused only while the customer refuses personalization (a choice the batch
    itself made before it counts)."""

    def __init__(self, service: ActivityService) -> None:
        self.service = service

    async def begin(self, batch: Batch, actions: Sequence[SyncAction]) -> TargetBatch:
        view = batch.session.folded.state if batch.session.folded else SessionView()
        version = batch.session.version_of(Activity.create_id(batch.subject_id))
        stream = await self.service.stream(
            batch.subject_id, view, version, from_view=not batch.fresh
        )
        ledger: Consent | None = None
        if any(isinstance(a.operation, activity.SetPersonalization) for a in actions):
            loaded = Loaded(None, None, False, batch.session)
            ledger = await self.service.consents.stream(
                batch.subject_id, loaded, from_view=not batch.fresh
            )
        return _ActivityBatch(stream, ledger)


class _ActivityBatch:
    def __init__(self, stream: Activity, ledger: Consent | None) -> None:
        self.stream = stream
        self.ledger = ledger

    def apply(self, action: SyncAction) -> Aggregate:
        command = action.operation
        if isinstance(command, activity.SetPersonalization) and self.ledger is not None:
            command.run(self.ledger)
            self.stream.personalization = command.allowed
            return self.ledger
        if not isinstance(command, activity.Record):
            raise TypeError(f"an activity action needs an activity command: {command!r}")
        command.run(self.stream)
        return self.stream

    async def settle(self, projected: Projected) -> None:
        return None

    def current(self, action: SyncAction, error: Exception) -> object:
        return ActivityNow(self.stream.personalization)
