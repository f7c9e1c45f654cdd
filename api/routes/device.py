"""Device routes (`/v1/me/...`): a customer's app records cart actions and resumes its session."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from litestar import Controller, Response, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, Parameter

from api.auth import customer_only
from api.customer_requests import (
    ChannelHeader,
    IdempotencyKey,
    IfMatch,
    IfNoneMatch,
    Me,
    customer_meta,
    idempotency_key_of,
)
from api.etags import check_not_modified, content_etag, if_match_version, version_etag
from api.limits import MAX_SKU
from api.problems import NO_CART
from api.schemas import SKU_PATTERN, AddItem, Cart, ChangeQuantity, SessionResponse
from continuity import carts
from continuity.runtime import Runtime
from projections.cart import CartView

SkuPath = Annotated[
    str,
    Parameter(
        min_length=1,
        max_length=MAX_SKU,
        pattern=SKU_PATTERN,
        description="The item's SKU.",
    ),
]


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
            customer_meta(request.user, channel),
            command,
            idempotency_key=idempotency_key_of(idempotency_key),
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
        names = await runtime.devices.names(request.user.subject_id)
        body = SessionResponse.of(request.user.subject_id, view, names)
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
