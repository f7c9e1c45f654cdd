"""The cart service: one call per customer action, with idempotency and If-Match."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from decimal import Decimal
from uuid import UUID

import msgspec

from aggregates import money
from aggregates.cart import Cart, CartState, LineState
from aggregates.errors import NotFound
from aggregates.metadata import EventMeta
from continuity.commands import SessionLoad, is_retry
from continuity.errors import (
    ConcurrencyConflict,
    IntegrityViolation,
    PreconditionFailed,
    SubjectErased,
    ViewMoved,
)
from continuity.registry import Projected
from continuity.repository import IdempotencyKey, Repository
from continuity.subject_views import Read, SealedViews
from continuity.turns import Turns
from privacy.vault import KeyVault
from projections.cart import CartView
from projections.session import SessionView

ATTEMPTS = 5
"""Times a command is tried when another process's append or a moved view row gets between."""
BACKOFF = 0.002
"""Seconds: the most the first retry waits (doubling), so racing processes fall out of step."""


@dataclass(frozen=True)
class Command:
    """A cart method and its arguments; its fingerprint tells a retry from a reused key."""

    method: str
    args: tuple[str | int | Decimal, ...] = ()
    currency: str | None = None
    """The currency a cart this command opens is in (else the default)."""

    def __call__(self, cart: Cart) -> None:
        getattr(cart, self.method)(*self.args)

    @property
    def fingerprint(self) -> bytes:
        return msgspec.msgpack.encode(["cart", self.method, *self.args])


def add_item(
    sku: str, name: str, unit_price: Decimal, quantity: int, currency: str | None = None
) -> Command:
    """Without a currency, the fingerprint is what it was before carts had one, so a retry
    from an older client's queue is still recognised."""
    currency_arg = () if currency is None else (currency,)
    return Command("add_item", (sku, name, unit_price, quantity, *currency_arg), currency)


def change_quantity(sku: str, quantity: int) -> Command:
    return Command("change_quantity", (sku, quantity))


def remove_item(sku: str) -> Command:
    return Command("remove_item", (sku,))


def checkout() -> Command:
    return Command("checkout")


class CartService:
    def __init__(
        self,
        repository: Repository,
        sessions: SealedViews[SessionView],
        vault: KeyVault,
        default_currency: str = money.DEFAULT_CURRENCY,
        *,
        turns: Turns | None = None,
    ) -> None:
        self.default_currency = money.check_currency(default_currency)
        self.repository = repository
        self.sessions = sessions
        self.vault = vault
        self.pool = repository.store.pool
        self.turns = turns or Turns()
        self._load = SessionLoad(self.pool, sessions)

    async def session(self, subject_id: UUID) -> SessionView:
        """The resume view; an empty one for a new customer, SubjectErased after erasure."""
        view = await self.sessions.load(self.pool, subject_id)
        if view is None:
            if await self.vault.erased_among([subject_id]):
                raise SubjectErased(subject_id)
            return SessionView()
        return view

    async def cart(self, subject_id: UUID) -> CartView | None:
        return (await self.session(subject_id)).cart

    async def execute(
        self,
        subject_id: UUID,
        meta: EventMeta,
        command: Command,
        *,
        idempotency_key: UUID,
        if_match: int | None = None,
        opens_cart: bool = False,
    ) -> CartView:
        """Run `command` on the customer's current cart and return the cart after it.

        A retried request (same idempotency key) returns the cart without running the command
        again. With `if_match`, a cart at another version is PreconditionFailed; without it, a
        concurrent change (from another process: this one runs a subject's commands in turn)
        is retried on the fresh state.
        """
        from_view = True
        for attempt in range(ATTEMPTS):
            try:
                async with self.turns.of(subject_id):
                    return await self._attempt(
                        subject_id, meta, command, idempotency_key, if_match, opens_cart, from_view
                    )
            except ConcurrencyConflict as conflict:
                if if_match is not None:
                    raise PreconditionFailed(str(if_match), conflict.actual) from None
                if attempt == ATTEMPTS - 1:
                    raise
                from_view = False  # the view may be what is behind: read the log next time
            except ViewMoved:
                if attempt == ATTEMPTS - 1:
                    raise
            await asyncio.sleep(random.uniform(0, BACKOFF * 2**attempt))  # noqa: S311
        raise AssertionError("unreachable")

    async def _attempt(
        self,
        subject_id: UUID,
        meta: EventMeta,
        command: Command,
        idempotency_key: UUID,
        if_match: int | None,
        opens_cart: bool,
        from_view: bool,
    ) -> CartView:
        request = IdempotencyKey(subject_id, idempotency_key)
        loaded = await self._load(request)
        if loaded.erased:
            raise SubjectErased(subject_id)
        view = loaded.view
        if await is_retry(self.vault, request, command.fingerprint, loaded.digest):
            return _current(view)
        cart = await self.cart_of(subject_id, loaded.session, from_view)
        current_version = cart.version if cart is not None else 0
        if if_match is not None and if_match != current_version:
            raise PreconditionFailed(str(if_match), current_version)
        if cart is None or (cart.closed and opens_cart):
            if not opens_cart:
                raise NotFound("there is no open cart", field=None)
            cart = self.next_cart(subject_id, cart, command)
        command(cart)
        opened = cart

        def cart_folded(projected: Projected) -> None:
            view = self.sessions.written(projected).get(subject_id)
            if view is None or view.cart is None or view.cart.cart_id != opened.id:
                raise IntegrityViolation(f"the session view of subject {subject_id}")

        saved = await self.repository.save(
            cart,
            subject_id,
            meta,
            request,
            command.fingerprint,
            cart_folded,
            reads={self.sessions.name: {subject_id: loaded.session}},
        )
        written = self.sessions.written(saved.projected).get(subject_id)
        if written is None or written.cart is None:  # an earlier identical request was recorded
            return _current(await self.session(subject_id))
        return written.cart

    async def cart_of(
        self, subject_id: UUID, session: Read[SessionView], from_view: bool = True
    ) -> Cart | None:
        """The current cart: stood up from the session view, which is written in the same
        commit as the cart's events; loaded from its snapshot and the log instead when the view
        turned out to be behind the stream (`from_view` False: a stale row put back, say)."""
        folded = session.folded
        shown = folded.state.cart if folded is not None else None
        if shown is None:
            return None
        if from_view and folded is not None and folded.streams.get(shown.cart_id) == shown.version:
            return Cart.restore(shown.cart_id, shown.version, cart_state(shown, subject_id))
        return await self.repository.load(shown.cart_id, Cart)

    def next_cart(self, subject_id: UUID, last: Cart | None, opening: Command) -> Cart:
        """The customer's next cart after `last` (checked out, if any), in the currency of
        the command that opens it, or the default."""
        generation = last.generation + 1 if last is not None else 1
        currency = money.check_currency(opening.currency or self.default_currency)
        return Cart(subject_id=subject_id, generation=generation, currency=currency)


def cart_state(cart: CartView, subject_id: UUID) -> CartState:
    """The state of the cart a session view shows."""
    return CartState(
        subject_id=subject_id,
        generation=cart.generation,
        currency=cart.currency,
        lines=[LineState(i.sku, i.name, i.unit_price, i.quantity) for i in cart.items],
        checked_out=cart.status == "checked_out",
        merged_into=cart.merged_into,
    )


def _current(view: SessionView) -> CartView:
    if view.cart is None:
        raise NotFound("there is no cart")
    return view.cart
