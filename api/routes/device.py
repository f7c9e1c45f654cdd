"""Device routes (`/v1/me/...`): a customer's app records cart actions and resumes its session."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID, uuid4

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.exceptions import ValidationException
from litestar.params import HeaderParameter, JSONBody, Parameter

from aggregates.metadata import CHANNELS, EventMeta
from api.auth import Principal, customer_only
from api.etags import check_not_modified, content_etag, if_match_version, version_etag
from api.limits import MAX_SKU
from api.problems import CHANNEL_NOT_ALLOWED, NO_CART
from api.schemas import SKU_PATTERN, AddItem, Cart, ChangeQuantity, SessionResponse
from continuity import carts
from continuity.runtime import Runtime
from projections.cart import CartView

IfMatch = Annotated[
    str | None,
    HeaderParameter(
        name="If-Match",
        required=False,
        description=(
            'The cart version the change was based on, as its ETag gave it: "3" (412 if stale;'
            ' a weak W/"3" is 412 too, since writes compare strongly).'
        ),
    ),
]
IfNoneMatch = Annotated[
    str | None,
    HeaderParameter(
        name="If-None-Match",
        required=False,
        description="ETags the client holds; 304 without a body when one is current.",
    ),
]
SkuPath = Annotated[
    str,
    Parameter(
        min_length=1,
        max_length=MAX_SKU,
        pattern=SKU_PATTERN,
        description="The item's SKU.",
    ),
]
IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        required=False,
        description="A UUID per action; a retry with the same key is answered, not repeated.",
    ),
]
ChannelHeader = Annotated[
    str | None,
    HeaderParameter(
        name="X-Channel",
        required=False,
        description=(
            "web, app, chat, email, phone or store (default web). agent and system are not"
            " a customer's channels: 403."
        ),
    ),
]

Me = Request[Principal, Any, Any]

CUSTOMER_CHANNELS: frozenset[str] = CHANNELS - {"agent", "system"}
"""Where a customer's own device may say an action happened; agent and system actions come
from those actors' routes, so an event's channel can be trusted to say who acted."""


def _idempotency_key(value: str | None) -> UUID:
    if value is None:
        return uuid4()
    try:
        return UUID(value)
    except ValueError:
        raise ValidationException(
            "Idempotency-Key must be a UUID",
            extra=[{"key": "Idempotency-Key", "source": "header", "message": "not a UUID"}],
        ) from None


def _meta(principal: Principal, channel: str | None) -> EventMeta:
    chosen = "web" if channel is None else channel
    if chosen not in CHANNELS:
        raise ValidationException(
            f"X-Channel must be one of {', '.join(sorted(CUSTOMER_CHANNELS))}",
            extra=[{"key": "X-Channel", "source": "header", "message": "unknown channel"}],
        )
    if chosen not in CUSTOMER_CHANNELS:
        raise CHANNEL_NOT_ALLOWED(
            f"X-Channel {chosen} is for agents and the system, not a customer's device token",
            field="X-Channel",
        )
    return EventMeta(channel=chosen, device=principal.device, actor_type="customer")  # type: ignore[arg-type]


def _with_etag(cart: CartView) -> Response[Cart]:
    return Response(Cart.of(cart), headers={"ETag": version_etag(cart.version)})


class DeviceController(Controller):
    path = "/v1/me"
    guards = [customer_only]
    tags = ["device"]

    async def _run(
        self,
        request: Me,
        runtime: Runtime,
        command: carts.Command,
        if_match: str | None,
        idempotency_key: str | None,
        channel: str | None,
        opens_cart: bool = False,
    ) -> Response[Cart]:
        cart = await runtime.carts.execute(
            request.user.subject_id,
            _meta(request.user, channel),
            command,
            idempotency_key=_idempotency_key(idempotency_key),
            if_match=if_match_version(if_match),
            opens_cart=opens_cart,
        )
        return _with_etag(cart)

    @get("/session", summary="Resume: the customer's cart and devices")
    async def session(
        self,
        request: Me,
        runtime: NamedDependency[Runtime],
        if_none_match: IfNoneMatch = None,
    ) -> Response[SessionResponse]:
        view = await runtime.carts.session(request.user.subject_id)
        body = SessionResponse.of(request.user.subject_id, view)
        etag = content_etag(body)
        check_not_modified(if_none_match, etag)
        return Response(body, headers={"ETag": etag})

    @get("/cart", summary="The current cart, with its version in ETag")
    async def get_cart(
        self,
        request: Me,
        runtime: NamedDependency[Runtime],
        if_none_match: IfNoneMatch = None,
    ) -> Response[Cart]:
        cart = await runtime.carts.cart(request.user.subject_id)
        if cart is None:
            raise NO_CART("there is no cart yet: add an item to open one")
        check_not_modified(if_none_match, version_etag(cart.version))
        return _with_etag(cart)

    @post("/cart/items", status_code=200, summary="Add an item (adds to its quantity if present)")
    async def add_item(
        self,
        request: Me,
        runtime: NamedDependency[Runtime],
        data: JSONBody[AddItem],
        if_match: IfMatch = None,
        idempotency_key: IdempotencyKey = None,
        channel: ChannelHeader = None,
    ) -> Response[Cart]:
        currency = data.currency if isinstance(data.currency, str) else None
        command = carts.add_item(
            data.sku, data.name, Decimal(data.unit_price), data.quantity, currency
        )
        return await self._run(
            request, runtime, command, if_match, idempotency_key, channel, opens_cart=True
        )

    @patch("/cart/items/{sku:str}", summary="Set an item's quantity")
    async def change_quantity(
        self,
        request: Me,
        runtime: NamedDependency[Runtime],
        sku: SkuPath,
        data: JSONBody[ChangeQuantity],
        if_match: IfMatch = None,
        idempotency_key: IdempotencyKey = None,
        channel: ChannelHeader = None,
    ) -> Response[Cart]:
        command = carts.change_quantity(sku, data.quantity)
        return await self._run(request, runtime, command, if_match, idempotency_key, channel)

    @delete("/cart/items/{sku:str}", status_code=200, summary="Remove an item")
    async def remove_item(
        self,
        request: Me,
        runtime: NamedDependency[Runtime],
        sku: SkuPath,
        if_match: IfMatch = None,
        idempotency_key: IdempotencyKey = None,
        channel: ChannelHeader = None,
    ) -> Response[Cart]:
        command = carts.remove_item(sku)
        return await self._run(request, runtime, command, if_match, idempotency_key, channel)

    @post("/cart/checkout", status_code=200, summary="Check the cart out")
    async def checkout(
        self,
        request: Me,
        runtime: NamedDependency[Runtime],
        if_match: IfMatch = None,
        idempotency_key: IdempotencyKey = None,
        channel: ChannelHeader = None,
    ) -> Response[Cart]:
        return await self._run(
            request, runtime, carts.checkout(), if_match, idempotency_key, channel
        )
