"""Merging a guest into the customer who signs in: what the guest had going continues as the
customer's, in one atomic append across the two subjects.

Streams belong to one subject (every view folds by subject), so nothing is re-pointed: each
thing is recorded anew under the customer (sealed with the customer's key) and the guest's
original is closed with an event saying where it went. What moves:

- the guest's open cart with lines: its lines are added into the customer's current cart (a
  sku already there adds its quantity; a cart is opened, in the guest cart's currency, if the
  customer has none or theirs is closed). A quantity past MAX_QUANTITY is capped and lines past
  MAX_LINES are left out, counted in the summary: a sign-in never fails over what fits in a
  cart. A customer cart in another currency cannot take the lines (there is no rate to convert
  prices by): the guest's cart is then left open and as it was, and the summary says so.
  A checked-out guest cart stays with the guest.
- each application in progress, at the same step with every answer (one idle past the limit
  is left to expire with the guest);
- each conversation not resolved, in its status and since when (a handed-off one keeps its
  place in the agents' queue), with its newest `MAX_MOVED_TURNS` turns as they were recorded.

Activity (products viewed, resume points) stays in the guest's log. A new kind of thing to move
is one more `_move_*` step and one more part of `MergeSummary`.

Idempotent: the request's key is derived from the two subjects and the guest streams it closes
(at their versions), so a retried merge of the same state appends nothing twice, and a guest
who went on after a first sign-in (on a second device) moves what is new on the next one. The
summary is read back from the guest's closing events, so every merge of the pair answers the
same, `already_merged` telling a repeat that moved nothing new.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid5

import msgspec
from eventsourcing.domain import Aggregate
from eventsourcing.utils import get_topic

from aggregates.application import Application
from aggregates.cart import Cart, CartMerge
from aggregates.conversation import MAX_MOVED_TURNS, Conversation, Medium, PastTurn
from aggregates.errors import InvalidValue
from aggregates.metadata import EventMeta
from continuity.applications import IDLE_LIMIT
from continuity.commands import Commands
from continuity.errors import IntegrityViolation, SubjectErased
from continuity.repository import IdempotencyKey, Repository, UnitOfWork
from continuity.subject_views import Read, SealedViews
from continuity.turns import Turns
from privacy.vault import KeyVault
from projections.envelope import Envelope
from projections.session import SessionView

MERGE_NAMESPACE = UUID("e2b8c5a1-7f3d-4c09-9b6e-4a1d8f0c7e25")
_CLOSINGS = [get_topic(c) for c in (Cart.MergedInto, Application.MovedTo, Conversation.MovedTo)]
_STATUS_CHANGES = (
    Conversation.Opened,
    Conversation.HandoffRequested,
    Conversation.HandoffAccepted,
    Conversation.Resolved,
    Conversation.Reopened,
)
"""What sets a conversation's status, and so the time it has been in it since."""


class MergeSummary(msgspec.Struct, frozen=True, kw_only=True):
    """What a guest's merge into a customer moved, in ids and counts (nothing personal)."""

    guest_id: UUID
    customer_id: UUID
    cart_id: UUID | None = None
    """The customer's cart the guest's lines went into (the latest, if several merges)."""
    cart_lines_moved: int = 0
    cart_lines_capped: int = 0
    """Of the lines moved, those whose quantity was cut to the most a line holds."""
    cart_lines_left: int = 0
    """Lines not moved: past the most lines a cart holds, or the whole open guest cart when
    the customer's cart is in another currency (`cart_currency_mismatch`)."""
    cart_currency_mismatch: bool = False
    applications: dict[UUID, UUID] = msgspec.field(default_factory=dict)
    """The guest's application id -> the customer's, for each moved."""
    conversations: dict[UUID, UUID] = msgspec.field(default_factory=dict)
    """The guest's conversation id -> the customer's, for each moved."""
    turns_left: int = 0
    """Older turns of moved conversations not carried over (they stay in the guest's)."""
    already_merged: bool = False
    """True when this call moved nothing new: an earlier merge of the pair had moved it."""


@dataclass
class _Moves:
    """A merge being planned: the aggregates to save (the customer's first: the request's
    first event is theirs), the guest streams it closes, and what is left behind."""

    customer: list[Aggregate] = field(default_factory=list)
    guest: list[Aggregate] = field(default_factory=list)
    cart_lines_left: int = 0
    cart_currency_mismatch: bool = False

    def move(self, recorded: Aggregate, closed: Aggregate) -> None:
        if not any(a is recorded for a in self.customer):
            self.customer.append(recorded)
        self.guest.append(closed)

    def closes(self) -> list[tuple[UUID, int]]:
        """The guest streams closed and their versions before: what tells one merge of the
        pair from a later one (of what the guest did since)."""
        return sorted((a.id, a.version - 1) for a in self.guest)


class GuestMerge:
    def __init__(
        self,
        repository: Repository,
        sessions: SealedViews[SessionView],
        vault: KeyVault,
        *,
        turns: Turns | None = None,
        idle_limit: timedelta = IDLE_LIMIT,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.repository = repository
        self.store = repository.store
        self.sessions = sessions
        self.vault = vault
        self.idle_limit = idle_limit
        self.clock = clock
        self.commands = Commands(self.store.pool, vault, turns or Turns())

    async def merge(self, guest_id: UUID, customer_id: UUID, meta: EventMeta) -> MergeSummary:
        """Move the guest's cart, applications in progress and open conversations to the
        customer, in both subjects' turns; again on the fresh state when a concurrent append
        (the customer on another device) got in between."""
        if guest_id == customer_id:
            raise InvalidValue("a subject is not merged into itself", field="customer_id")
        return await self.commands.run_for(
            [guest_id, customer_id], lambda: self._attempt(guest_id, customer_id, meta)
        )

    async def _attempt(self, guest_id: UUID, customer_id: UUID, meta: EventMeta) -> MergeSummary:
        erased = await self.vault.erased_among([guest_id, customer_id])
        if erased:
            raise SubjectErased(next(iter(erased)))
        reads = await self.sessions.read(self.store.pool, [customer_id, guest_id])
        guest, customer = _state(reads[guest_id]), _state(reads[customer_id])
        moves = _Moves()
        await self._move_cart(guest, customer, customer_id, moves)
        await self._move_applications(guest, customer_id, moves)
        await self._move_conversations(guest, customer_id, moves)
        appended = False
        if moves.guest:
            work = UnitOfWork()
            for aggregate in moves.customer:
                work.add(aggregate, customer_id, meta)
            for aggregate in moves.guest:
                work.add(aggregate, guest_id, meta)
            closes = moves.closes()
            plan = ",".join(f"{stream}@{version}" for stream, version in closes)
            request = IdempotencyKey(
                customer_id, uuid5(MERGE_NAMESPACE, f"{guest_id}/{customer_id}/{plan}")
            )
            fingerprint = msgspec.msgpack.encode(["merge", guest_id, customer_id, closes])
            saved = await self.repository.commit(
                work, request, fingerprint, reads={self.sessions.name: reads}
            )
            appended = bool(saved.projected)  # empty: a concurrent, identical merge recorded it
        return await self._summary(guest_id, customer_id, moves, already_merged=not appended)

    async def _move_cart(
        self, guest: SessionView, customer: SessionView, customer_id: UUID, moves: _Moves
    ) -> None:
        shown = guest.cart
        if shown is None or shown.status != "open" or not shown.items:
            return
        loaded = await self.repository.load_many(
            [shown.cart_id, *([customer.cart.cart_id] if customer.cart else [])], Cart
        )
        source = loaded[shown.cart_id]
        if source.closed or not source.lines:
            return
        into = loaded.get(customer.cart.cart_id) if customer.cart else None
        if into is not None and not into.closed and into.currency != source.currency:
            moves.cart_lines_left += len(source.lines)
            moves.cart_currency_mismatch = True
            return
        if into is None or into.closed:
            generation = into.generation + 1 if into is not None else 1
            into = Cart(subject_id=customer_id, generation=generation, currency=source.currency)
        source.merge_into(into, customer_id, into.merge_lines(source))
        moves.move(into, source)

    async def _move_applications(
        self, guest: SessionView, customer_id: UUID, moves: _Moves
    ) -> None:
        ids = [a.application_id for a in guest.applications if a.status == "in_progress"]
        now = self.clock()
        for source in (await self.repository.load_many(ids, Application)).values():
            if source.status != "in_progress" or source.is_idle(now, self.idle_limit):
                continue
            moved = Application.imported(customer_id, source)
            source.move_to(moved.id, customer_id)
            moves.move(moved, source)

    async def _move_conversations(
        self, guest: SessionView, customer_id: UUID, moves: _Moves
    ) -> None:
        ids = [c.conversation_id for c in guest.conversations if c.status not in _CLOSED]
        if not ids:
            return
        sources = await self.repository.load_many(ids, Conversation)
        histories: dict[UUID, list[Envelope]] = {stream: [] for stream in sources}
        for envelope in await self.repository.mapper.to_envelopes(
            await self.store.select_streams(list(sources))
        ):
            histories[envelope.stream_id].append(envelope)
        for stream, source in sources.items():
            if source.status in _CLOSED:
                continue
            history = _History.of(histories[stream][: source.version])
            moved = Conversation.imported(
                customer_id,
                source,
                history.turns,
                medium=history.medium,
                started_at=history.started_at,
                status_since=history.status_since,
            )
            source.move_to(moved.id, customer_id, max(0, len(history.turns) - MAX_MOVED_TURNS))
            moves.move(moved, source)

    async def _summary(
        self, guest_id: UUID, customer_id: UUID, moves: _Moves, *, already_merged: bool
    ) -> MergeSummary:
        """Everything the guest's closing events say went to this customer, and what this
        merge left behind."""
        closings = await self.repository.mapper.to_envelopes(
            await self.store.select_subject(guest_id, topics=_CLOSINGS)
        )
        cart_id: UUID | None = None
        cart = CartMerge(moved=0, capped=0, left=moves.cart_lines_left)
        applications: dict[UUID, UUID] = {}
        conversations: dict[UUID, UUID] = {}
        turns_left = 0
        for envelope in closings:
            event = envelope.event
            if isinstance(event, Cart.MergedInto) and event.into_subject == customer_id:
                cart_id = event.into
                cart = cart.plus(CartMerge(moved=event.moved, capped=event.capped, left=event.left))
            elif isinstance(event, Application.MovedTo) and event.to_subject == customer_id:
                applications[envelope.stream_id] = event.to
            elif isinstance(event, Conversation.MovedTo) and event.to_subject == customer_id:
                conversations[envelope.stream_id] = event.to
                turns_left += event.turns_left
        moved_any = cart_id is not None or applications or conversations
        return MergeSummary(
            guest_id=guest_id,
            customer_id=customer_id,
            cart_id=cart_id,
            cart_lines_moved=cart.moved,
            cart_lines_capped=cart.capped,
            cart_lines_left=cart.left,
            cart_currency_mismatch=moves.cart_currency_mismatch,
            applications=applications,
            conversations=conversations,
            turns_left=turns_left,
            already_merged=already_merged and bool(moved_any),
        )


_CLOSED = ("resolved", "moved")


def _state(read: Read[SessionView]) -> SessionView:
    return read.folded.state if read.folded is not None else SessionView()


@dataclass
class _History:
    """What a conversation's events say that its aggregate does not keep: its medium, when it
    started and entered its status, and its transcript."""

    medium: Medium
    started_at: datetime
    status_since: datetime
    turns: list[PastTurn]

    @classmethod
    def of(cls, envelopes: list[Envelope]) -> _History:
        first = envelopes[0]
        if not isinstance(first.event, Conversation.Opened | Conversation.Imported):
            raise IntegrityViolation(f"conversation {first.stream_id} does not start opened")
        history = cls(first.event.medium, first.recorded_at, first.recorded_at, [])
        for envelope in envelopes:
            event = envelope.event
            if isinstance(event, Conversation.Imported):
                history.started_at, history.status_since = event.started_at, event.status_since
            elif isinstance(event, Conversation.TurnImported):
                history.turns.append(event.turn)
            elif isinstance(event, Conversation.TurnAdded):
                history.turns.append(_past(envelope, event))
            if isinstance(event, _STATUS_CHANGES):
                history.status_since = envelope.recorded_at
        return history


def _past(envelope: Envelope, event: Conversation.TurnAdded) -> PastTurn:
    meta = envelope.meta or EventMeta("system", None, "system")
    return PastTurn(
        author=event.author,
        author_id=event.author_id,
        medium=event.medium,
        text=event.text,
        attachments=event.attachments,
        subject=event.subject,
        at=envelope.recorded_at,
        channel=envelope.channel,
        actor_type=meta.actor_type,
        device=meta.device,
        actor_id=meta.actor_id,
    )
