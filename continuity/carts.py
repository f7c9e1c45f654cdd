"""The cart service: one call per customer action, with idempotency and If-Match."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from uuid import UUID

import msgspec

from aggregates import money
from aggregates.cart import Cart
from aggregates.errors import NotFound
from aggregates.metadata import EventMeta
from continuity.errors import (
    ConcurrencyConflict,
    EventIdReused,
    IntegrityViolation,
    PreconditionFailed,
    SubjectErased,
)
from continuity.mapper import request_digest
from continuity.registry import Projected
from continuity.repository import IdempotencyKey, Repository
from continuity.subject_views import SealedViews
from privacy.vault import KeyVault
from projections.cart import CartView
from projections.session import SessionView

RETRIES_WITHOUT_IF_MATCH = 5


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
    ) -> None:
        self.default_currency = money.check_currency(default_currency)
        self.repository = repository
        self.sessions = sessions
        self.vault = vault
        self.pool = repository.store.pool

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
        concurrent change is retried on the fresh state.
        """
        attempts = 1 if if_match is not None else RETRIES_WITHOUT_IF_MATCH
        for attempt in range(attempts):
            try:
                return await self._attempt(
                    subject_id, meta, command, idempotency_key, if_match, opens_cart
                )
            except ConcurrencyConflict as conflict:
                if if_match is not None:
                    raise PreconditionFailed(str(if_match), conflict.actual) from None
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    async def _attempt(
        self,
        subject_id: UUID,
        meta: EventMeta,
        command: Command,
        idempotency_key: UUID,
        if_match: int | None,
        opens_cart: bool,
    ) -> CartView:
        view = await self.session(subject_id)
        cart_id = view.cart.cart_id if view.cart is not None else None
        request = IdempotencyKey(subject_id, idempotency_key)
        recorded = await self.repository.store.recorded_digest(request.event_ids(1)[0])
        if recorded is not None:
            key = await self.vault.key_for_writing(subject_id)
            if recorded != request_digest(key, command.fingerprint, 0):
                raise EventIdReused(idempotency_key)
            return await self._current(subject_id)
        cart = await self.repository.load(cart_id, Cart) if cart_id is not None else None
        current_version = cart.version if cart is not None else 0
        if if_match is not None and if_match != current_version:
            raise PreconditionFailed(str(if_match), current_version)
        if cart is None or (cart.checked_out and opens_cart):
            if not opens_cart:
                raise NotFound("there is no open cart", field=None)
            generation = cart.generation + 1 if cart is not None else 1
            currency = money.check_currency(command.currency or self.default_currency)
            cart = Cart(subject_id=subject_id, generation=generation, currency=currency)
        command(cart)
        opened = cart

        def cart_folded(projected: Projected) -> None:
            view = self.sessions.written(projected).get(subject_id)
            if view is None or view.cart is None or view.cart.cart_id != opened.id:
                raise IntegrityViolation(f"the session view of subject {subject_id}")

        saved = await self.repository.save(
            cart, subject_id, meta, request, command.fingerprint, cart_folded
        )
        written = self.sessions.written(saved.projected).get(subject_id)
        if written is None or written.cart is None:  # an earlier identical request was recorded
            return await self._current(subject_id)
        return written.cart

    async def _current(self, subject_id: UUID) -> CartView:
        view = await self.cart(subject_id)
        if view is None:
            raise NotFound("there is no cart")
        return view
