"""Carts have a currency since `Cart.Opened` version 2. Carts in logs written before read in the
configured default currency (an upcaster), and old absurd prices no longer break the fold."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID, uuid4

import httpx
import pytest
from eventsourcing.domain import Aggregate, DomainEvent
from eventsourcing.utils import clear_topic_cache, get_topic, register_topic

from aggregates import money
from aggregates.cart import Cart
from aggregates.metadata import EventMeta
from continuity import mapper as mapper_module
from continuity.runtime import Runtime
from continuity.settings import Settings
from privacy.master_key import Keyring
from tests.helpers import SECRET, TokenFactory, serve

pytestmark = pytest.mark.anyio

OPENED = get_topic(Cart.Opened)
META = EventMeta("app", device="phone")


class OpenedV1(Aggregate.Created):
    """`Cart.Opened` as it was before carts had a currency."""

    TOPIC = OPENED
    subject_id: UUID
    generation: int


def forget_codecs() -> None:
    clear_topic_cache()
    mapper_module._codec_for_topic.cache_clear()
    mapper_module._codec_for_class.cache_clear()


@pytest.fixture
def old_code() -> Iterator[None]:
    """While this fixture's test writes, the Opened topic names the old class; afterwards the
    current class again, as after a deployment."""
    forget_codecs()
    register_topic(OPENED, OpenedV1)
    yield
    forget_codecs()
    register_topic(OPENED, Cart.Opened)
    forget_codecs()


def at(cls: type[DomainEvent], cart_id: UUID, version: int, **fields: object) -> DomainEvent:
    return cls(
        originator_id=cart_id, originator_version=version, timestamp=datetime.now(UTC), **fields
    )


async def write_old_cart(runtime: Runtime, subject: UUID, *prices: Decimal) -> UUID:
    """A cart opened by the old code (no currency), with items at `prices`, in the log."""
    cart_id = Cart.create_id(subject)
    opened = at(
        OpenedV1, cart_id, 1, originator_topic=get_topic(Cart), subject_id=subject, generation=1
    )
    events = [opened]
    for n, price in enumerate(prices):
        added = at(
            Cart.ItemAdded, cart_id, n + 2, sku=f"OLD-{n}", name="Old", unit_price=price, quantity=2
        )
        events.append(added)
    rows = await runtime.mapper.to_rows(subject, META, events, [uuid4() for _ in events])
    await runtime.store.append(rows)
    return cart_id


@pytest.fixture
async def dollar_app(
    database_url: str, schema: str, keyring: Keyring
) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    settings = Settings(database_schema=schema, jwt_secret=SECRET, currency="USD")
    async with serve(settings, database_url, keyring) as (app, client):
        yield app.state.runtime, client
    money.use_legacy_currency(money.DEFAULT_CURRENCY)


async def test_an_old_cart_reads_in_the_configured_default_currency(
    dollar_app: tuple[Runtime, httpx.AsyncClient], auth: TokenFactory, old_code: None
) -> None:
    runtime, client = dollar_app
    subject = uuid4()
    cart_id = await write_old_cart(runtime, subject, Decimal("4.2"))
    forget_codecs()
    register_topic(OPENED, Cart.Opened)

    [opened, _] = await runtime.mapper.to_envelopes(await runtime.store.select_events(cart_id))
    assert isinstance(opened.event, Cart.Opened)
    assert opened.event.currency == "USD"
    loaded = await runtime.repository.load(cart_id, Cart)
    assert loaded is not None
    assert loaded.currency == "USD"

    await runtime.rebuilder.rebuild(runtime.sessions)
    session = (await client.get("/v1/me/session", headers=auth(subject))).json()
    assert session["cart"]["currency"] == "USD"
    assert session["cart"]["total"] == "8.40"

    added = await client.post(
        "/v1/me/cart/items",
        json={"sku": "NEW", "name": "New item", "unit_price": "1.5", "currency": "USD"},
        headers=auth(subject),
    )
    assert added.status_code == 200, added.text
    assert added.json()["cart_id"] == str(cart_id)
    assert added.json()["total"] == "9.90"


async def test_an_absurd_price_from_an_old_log_does_not_break_the_session(
    runtime: Runtime, client: httpx.AsyncClient, auth: TokenFactory, old_code: None
) -> None:
    """The API refuses such prices now; a log written before may still hold them."""
    subject = uuid4()
    await write_old_cart(runtime, subject, Decimal("1E+1000000"), Decimal("9" * 5000))
    forget_codecs()
    register_topic(OPENED, Cart.Opened)
    await runtime.rebuilder.rebuild(runtime.sessions)
    response = await client.get("/v1/me/session", headers=auth(subject))
    assert response.status_code == 200, response.text
    assert response.json()["cart"]["currency"] == "EUR"
    assert response.json()["cart"]["item_count"] == 4


def test_the_upcaster_fills_in_the_legacy_currency() -> None:
    state: dict[str, object] = {"subject_id": str(uuid4()), "generation": 1}
    money.use_legacy_currency("JPY")
    try:
        Cart.Opened.upcast_v1_v2(state)
    finally:
        money.use_legacy_currency(money.DEFAULT_CURRENCY)
    assert state["currency"] == "JPY"
