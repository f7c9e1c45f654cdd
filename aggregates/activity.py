"""A customer's activity: the products they viewed, what they searched for, the screen or step
each device is on, and whether they allow it to be recorded at all (personalization).

One stream per subject. Activity has no rule beyond that setting, so the aggregate keeps only
it: its state, and its snapshot, stay two fields however much is recorded, and an action stands
it up from the session view (which folds the same stream in the same commit) instead of
replaying a history. What was seen lives in the events (the log keeps everything) and in the
session view (the last few only).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Self
from uuid import UUID, uuid5

import msgspec
from eventsourcing.domain import Aggregate, event

from aggregates import money
from aggregates.errors import ConsentRequired, InvalidValue
from aggregates.restoring import restored

MAX_ITEMS = 50
"""Items one request records (an app sends what it saw since its last request)."""
MAX_SKU = 64
MAX_NAME = 200
MAX_QUERY = 200
MAX_SCREEN = 100
MAX_STEP = 63
MAX_RESULTS = 1_000_000
PERSONALIZATION = "personalization"
"""The purpose activity is recorded for: what a refusal names."""
ACTIVITY_NAMESPACE = UUID("c1d6a0f2-8b3e-4d7a-9e51-2f4b6c8d0a13")


class Viewed(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """A device showed a product (a price, if given, in `currency`)."""

    sku: str
    name: str
    price: Decimal | None = None
    currency: str | None = None


class Searched(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """A device searched for `query` (and found `results`, if it says)."""

    query: str
    results: int | None = None


class OnScreen(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """A device is on `screen`: of an application at `step`, or of a cart, if it says which.
    The resume point another device offers to continue from."""

    screen: str
    application_id: UUID | None = None
    step: str | None = None
    cart_id: UUID | None = None


Item = Viewed | Searched | OnScreen


class ActivityState(msgspec.Struct, frozen=True, gc=False):
    """What a snapshot holds, and what the session view carries to stand the stream up."""

    subject_id: UUID
    personalization: bool


def _text(value: str, limit: int, field: str) -> str:
    if not 0 < len(value) <= limit or not value.strip():
        raise InvalidValue(f"{field} must be 1 to {limit} characters, not only spaces", field)
    return value


class Activity(Aggregate):
    class Started(Aggregate.Created):
        subject_id: UUID

    class ProductViewed(Aggregate.Event):
        sku: str
        name: str
        price: Decimal | None
        currency: str | None

    class Searched(Aggregate.Event):
        query: str
        results: int | None

    class ScreenShown(Aggregate.Event):
        screen: str
        application_id: UUID | None
        step: str | None
        cart_id: UUID | None

    class PersonalizationSet(Aggregate.Event):
        """The customer allowed (or refused) personalization: recorded each time they say so,
        so what they chose, and when, is provable from the log."""

        allowed: bool

    @event(Started)
    def __init__(self, subject_id: UUID) -> None:
        self.subject_id = subject_id
        self.personalization = True

    @staticmethod
    def create_id(subject_id: UUID) -> UUID:
        return uuid5(ACTIVITY_NAMESPACE, str(subject_id))

    @classmethod
    def snapshot_type(cls) -> type[ActivityState]:
        return ActivityState

    def snapshot_state(self) -> ActivityState:
        return ActivityState(self.subject_id, self.personalization)

    @classmethod
    def restore(cls, stream_id: UUID, version: int, state: ActivityState) -> Self:
        """The stream at `version` from its state then, as if its events had been replayed."""
        return restored(cls, stream_id, version, **msgspec.structs.asdict(state))

    def record(self, items: Sequence[Item]) -> None:
        """Record what a device reports, in order; ConsentRequired while personalization is
        refused (then nothing is recorded)."""
        if not self.personalization:
            raise ConsentRequired(
                "the customer refused personalization: activity is not recorded",
                PERSONALIZATION,
            )
        if not 0 < len(items) <= MAX_ITEMS:
            raise InvalidValue(f"send 1 to {MAX_ITEMS} items", "items")
        for n, item in enumerate(items):
            self._record(item, f"items[{n}]")

    def _record(self, item: Item, where: str) -> None:
        if isinstance(item, Viewed):
            price = None
            if item.price is not None:
                if item.currency is None:
                    raise InvalidValue("a price needs its currency", f"{where}.currency")
                currency = money.check_currency(item.currency)
                price = money.check_amount(item.price, currency, f"{where}.price")
            elif item.currency is not None:
                money.check_currency(item.currency)
            self._viewed(
                _text(item.sku, MAX_SKU, f"{where}.sku"),
                _text(item.name, MAX_NAME, f"{where}.name"),
                price,
                item.currency,
            )
        elif isinstance(item, Searched):
            if item.results is not None and not 0 <= item.results <= MAX_RESULTS:
                raise InvalidValue(f"results must be 0 to {MAX_RESULTS}", f"{where}.results")
            self._searched(_text(item.query, MAX_QUERY, f"{where}.query"), item.results)
        else:
            step = None if item.step is None else _text(item.step, MAX_STEP, f"{where}.step")
            screen = _text(item.screen, MAX_SCREEN, f"{where}.screen")
            self._screen_shown(screen, item.application_id, step, item.cart_id)

    @event(ProductViewed)
    def _viewed(self, sku: str, name: str, price: Decimal | None, currency: str | None) -> None:
        pass

    @event(Searched)
    def _searched(self, query: str, results: int | None) -> None:
        pass

    @event(ScreenShown)
    def _screen_shown(
        self, screen: str, application_id: UUID | None, step: str | None, cart_id: UUID | None
    ) -> None:
        pass

    def set_personalization(self, allowed: bool) -> None:
        self._personalization_set(allowed)

    @event(PersonalizationSet)
    def _personalization_set(self, allowed: bool) -> None:
        self.personalization = allowed
