"""Guests and devices: a guest's first device (`POST /v1/sessions`), pairing another device
with a handoff code (`POST /v1/me/handoff`, `POST /v1/sessions/redeem`), the customer's device
list and revocation, and a guest's sign-in (`POST /v1/me/link`).

The two `/v1/sessions` routes take no token (the device has none yet): the token-free rate limit
applies to them, and redemption has its own limits besides (`continuity.handoff`).
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotAuthorizedException
from litestar.middleware.authentication import AuthenticationResult
from litestar.params import JSONBody, Parameter

from aggregates.errors import InvalidValue
from api.auth import NO_TOKEN, ContinuityToken, DeviceTokens, customer_only, principal_from_token
from api.auth import current_principal as current
from api.customer_requests import ChannelHeader, IfNoneMatch, Me, customer_meta
from api.device_schemas import (
    DeviceInfo,
    DeviceSession,
    HandoffCode,
    Linked,
    LinkRequest,
    NewSession,
    Redeem,
)
from api.etags import check_not_modified, content_etag
from api.issuers import Issuers
from api.rate_limits import client_key
from continuity.devices import Device
from continuity.runtime import Runtime

T = TypeVar("T", bound=msgspec.Struct | list[DeviceInfo])
DeviceId = Annotated[UUID, Parameter(description="The device's id, as the device list gives it.")]
HANDOFF_LINK = "continuity://handoff?code="


def _tagged(body: T) -> Response[T]:
    """A customer's answer with the strong ETag of its content, as every `/v1/me` answer."""
    return Response(body, headers={"ETag": content_etag(body)})


def _session(tokens: DeviceTokens, device: Device, guest: bool) -> DeviceSession:
    token, expires_at = tokens.issue(device.subject_id, device.device_id)
    return DeviceSession(device.subject_id, device.device_id, token, expires_at, guest)


class SessionsController(Controller):
    path = "/v1/sessions"
    tags = ["device"]
    security = NO_TOKEN

    @post("/", status_code=201, summary="Start a guest session: a new guest and a device token")
    async def start(
        self,
        runtime: NamedDependency[Runtime],
        device_tokens: NamedDependency[DeviceTokens],
        data: JSONBody[NewSession],
    ) -> DeviceSession:
        device = await runtime.guests.start(data.device_name, data.channel)
        return _session(device_tokens, device, guest=True)

    @post("/redeem", status_code=201, summary="Redeem a handoff code for this device's token")
    async def redeem(
        self,
        request: Request[Any, Any, Any],
        runtime: NamedDependency[Runtime],
        device_tokens: NamedDependency[DeviceTokens],
        data: JSONBody[Redeem],
    ) -> DeviceSession:
        client = client_key(request, runtime.settings.trusted_proxies)
        device = await runtime.handoff.redeem(data.code, client, data.device_name, data.channel)
        guest = await runtime.guests.is_guest(device.subject_id)
        return _session(device_tokens, device, guest)


class MyDevicesController(Controller):
    path = "/v1/me"
    guards = [customer_only]
    tags = ["device"]

    @post("/handoff", status_code=201, summary="A handoff code for another device to redeem")
    async def handoff(
        self, request: Me, runtime: NamedDependency[Runtime]
    ) -> Response[HandoffCode]:
        issued = await runtime.handoff.issue(request.user.subject_id, request.user.device_id)
        return _tagged(HandoffCode(issued.code, HANDOFF_LINK + issued.code, issued.expires_at))

    @get("/devices", summary="The customer's devices, most recently seen first")
    async def devices(
        self, request: Me, runtime: NamedDependency[Runtime], if_none_match: IfNoneMatch = None
    ) -> Response[list[DeviceInfo]]:
        found = await runtime.devices.of_subject(request.user.subject_id)
        body = [DeviceInfo.of(device, request.user.device_id) for device in found]
        check_not_modified(if_none_match, content_etag(body))
        return _tagged(body)

    @delete("/devices/{device_id:uuid}", status_code=204, summary="Revoke a device's token")
    async def revoke(
        self, request: Me, runtime: NamedDependency[Runtime], device_id: DeviceId
    ) -> None:
        await runtime.devices.revoke(request.user.subject_id, device_id)

    @post("/link", status_code=200, summary="Sign in: merge this guest into the customer")
    async def link(
        self,
        request: Me,
        runtime: NamedDependency[Runtime],
        device_tokens: NamedDependency[DeviceTokens],
        issuers: NamedDependency[Issuers],
        data: JSONBody[LinkRequest],
        channel: ChannelHeader = None,
    ) -> Response[Linked]:
        customer_id = await _customer_of(issuers, data.token, request)
        me = request.user
        linked = await runtime.guests.link(
            me.subject_id, me.device_id, customer_id, customer_meta(me, channel)
        )
        token, expires_at = None, None
        if me.device_id is not None:
            token, expires_at = device_tokens.issue(customer_id, me.device_id)
        return _tagged(Linked.of(linked, token, expires_at))


async def _customer_of(issuers: Issuers, token: str, request: Me) -> UUID:
    """The customer a sign-in token names; InvalidValue (naming `token`) if it is refused."""
    try:
        claims = ContinuityToken.from_claims(await issuers.verify(token))
        result = AuthenticationResult(await principal_from_token(claims, request), claims)
        principal = (await current(result, request)).user
    except NotAuthorizedException as exc:
        raise InvalidValue(f"the sign-in token was refused: {exc.detail}", "token") from None
    if principal.role != "customer":
        raise InvalidValue("the sign-in token must be a customer's", "token")
    subject: UUID = principal.subject_id
    return subject
