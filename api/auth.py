"""Bearer JWTs: the role and the subject (customer) or agent id, and the device.

Which issuers are accepted and how each token is verified is in `api/issuers.py`; this module
turns verified claims into a `Principal` and plugs that into Litestar's JWT auth.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args
from uuid import UUID, uuid5

import msgspec
from litestar.connection import ASGIConnection
from litestar.exceptions import (
    ImproperlyConfiguredException,
    NotAuthorizedException,
    PermissionDeniedException,
)
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import DefineMiddleware
from litestar.middleware.authentication import AuthenticationResult
from litestar.openapi.spec import SecurityRequirement
from litestar.security.jwt import JWTAuth, JWTAuthenticationMiddleware, Token

from aggregates.metadata import CHANNELS, EventMeta
from api.console.cookies import OPEN_PATHS, SESSION_COOKIE, in_console
from api.issuers import (
    BUILT_IN_ALGORITHM,
    BuiltInIssuer,
    IdentityProviderIssuer,
    Issuers,
    Verifier,
)
from continuity.devices import DeviceRefused, Devices
from continuity.identity_provider import IdentityProvider
from continuity.settings import BUILT_IN_ISSUER, Settings

Role = Literal["customer", "agent", "compliance", "service"]
ROLES: frozenset[str] = frozenset(get_args(Role))
ALGORITHM = BUILT_IN_ALGORITHM
ISSUER = BUILT_IN_ISSUER
AUDIENCE = Settings.jwt_audience
MAX_DEVICE_NAME = 100
CUSTOMER_CHANNELS: frozenset[str] = CHANNELS - {"agent", "system"}

NO_TOKEN: list[SecurityRequirement] = [{}]
"""An operation's OpenAPI `security` for the token-free routes: the empty requirement overrides
the API-wide bearer requirement (Litestar drops an empty list, which would inherit it)."""

EXTERNAL_SUBJECTS = UUID("6f0b8c5e-3d1a-4c7e-9b2f-5a4d8e1c7b90")
"""The uuid5 namespace that maps an identity provider's subjects to ours. Never change it: every
IdP user's data is filed under the id it yields."""


@dataclass
class ContinuityToken(Token):
    """Claims beyond the standard ones: the role, and for a customer the device. A token without
    a role is refused, never read as a customer's."""

    role: Role | None = None
    device: str | None = None
    did: str | None = None
    """A registered device's id (`continuity.devices`), in Continuity's own device tokens."""

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> ContinuityToken:
        """The token for claims an issuer has already verified. (Litestar's `Token.decode`
        verifies and converts in one step, with one secret; we verify per issuer first.)"""
        role = claims.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise NotAuthorizedException("the token must carry a role: " + ", ".join(sorted(ROLES)))
        names = {f.name for f in dataclasses.fields(cls)} - {"extras"}
        fields = {k: v for k, v in claims.items() if k in names}
        fields["extras"] = {k: v for k, v in claims.items() if k not in names}
        try:
            fields["exp"] = datetime.fromtimestamp(claims["exp"], UTC)
            if "iat" in claims:
                fields["iat"] = datetime.fromtimestamp(claims["iat"], UTC)
            return msgspec.convert(fields, cls)
        except (
            KeyError,
            TypeError,
            ValueError,
            OverflowError,
            OSError,
            msgspec.ValidationError,
            ImproperlyConfiguredException,
        ):
            raise NotAuthorizedException("the token's claims are malformed") from None


@dataclass(frozen=True, slots=True)
class Principal:
    role: Role
    subject_id: UUID
    device: str | None
    device_id: UUID | None = None
    """Set for a registered device's token: checked on every request (revoked? moved?)."""
    channel: str | None = None
    """A registered device's channel: where its actions happen unless `X-Channel` says."""


def subject_id_for(issuer: str | None, sub: str) -> UUID:
    """Our subject id for a verified token's `sub`.

    Continuity's own tokens carry the id itself (a UUID). An identity provider's `sub` is often
    not a UUID, and must never be able to name one of our subjects: it is mapped to
    `uuid5(EXTERNAL_SUBJECTS, f"{iss}|{sub}")`, the same id on every request and device, distinct
    per issuer, and out of reach of an IdP that puts someone's subject id in `sub`.
    """
    if issuer == ISSUER:
        try:
            return UUID(sub)
        except ValueError:
            raise NotAuthorizedException("the token's subject is not a UUID") from None
    return uuid5(EXTERNAL_SUBJECTS, f"{issuer}|{sub}")


def issue_token(
    secret: str,
    subject: UUID,
    role: Role,
    device: str | None,
    ttl: timedelta,
    audience: str = AUDIENCE,
    *,
    device_id: UUID | None = None,
) -> str:
    """A token signed with `secret`; with `device_id`, a registered device's token (its
    `device` is the id, unless named)."""
    if device_id is not None and device is None:
        device = str(device_id)
    if role not in ROLES:
        raise ValueError(f"a role must be one of {', '.join(sorted(ROLES))}")
    if device is not None and not 0 < len(device) <= MAX_DEVICE_NAME:
        raise ValueError(f"a device name must be 1 to {MAX_DEVICE_NAME} characters")
    token = ContinuityToken(
        sub=str(subject),
        exp=datetime.now(UTC) + ttl,
        iss=ISSUER,
        aud=audience,
        role=role,
        device=device,
        did=None if device_id is None else str(device_id),
    )
    return token.encode(secret, ALGORITHM)


async def principal_from_token(
    token: ContinuityToken, _: ASGIConnection[Any, Any, Any, Any]
) -> Principal:
    if token.role is None:
        raise NotAuthorizedException("the token must carry a role")
    if token.device is not None and not 0 < len(token.device) <= MAX_DEVICE_NAME:
        raise NotAuthorizedException(
            f"the token's device must be 1 to {MAX_DEVICE_NAME} characters"
        )
    if token.role == "customer" and not token.device:
        raise NotAuthorizedException("a customer token must name its device")
    device_id = None
    if token.did is not None and token.iss == ISSUER:
        try:
            device_id = UUID(token.did)
        except ValueError:
            raise NotAuthorizedException("the token's did is not a UUID") from None
    return Principal(token.role, subject_id_for(token.iss, token.sub), token.device, device_id)


async def current_principal(
    result: AuthenticationResult, connection: ASGIConnection[Any, Any, Any, Any]
) -> AuthenticationResult:
    """`result`, with a registered device's current owner: its token stops working the moment
    the device is revoked, and acts as the customer once a guest signs in."""
    principal = result.user
    if not isinstance(principal, Principal) or principal.device_id is None:
        return result
    devices: Devices = connection.app.state.runtime.devices
    try:
        owner = await devices.owner(principal.device_id, principal.subject_id)
    except DeviceRefused:
        raise NotAuthorizedException("this device's token was revoked") from None
    if owner.subject_id == principal.subject_id and owner.channel == principal.channel:
        return result
    current = dataclasses.replace(principal, subject_id=owner.subject_id, channel=owner.channel)
    return AuthenticationResult(current, result.auth)


class ContinuityAuthenticationMiddleware(JWTAuthenticationMiddleware):
    """Litestar's JWT middleware with per-issuer verification (`Issuers`) instead of one
    secret; the rest (header, exclusions, user lookup) is Litestar's."""

    __slots__ = ("issuers",)

    def __init__(self, *, issuers: Issuers, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.issuers = issuers

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        """The console's pages take the token from the console's cookie, and only from it: a
        page is opened by a browser, which sends no `Authorization` header of its own."""
        if in_console(connection.scope["path"]):
            token = connection.cookies.get(SESSION_COOKIE)
            if not token:
                raise NotAuthorizedException("sign in to the console")
            return await self.authenticate_token(token, connection)
        return await super().authenticate_request(connection)

    async def authenticate_token(
        self, encoded_token: str, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        verified = self.issuers.verified
        known = verified.attached(encoded_token)
        if isinstance(known, AuthenticationResult):
            return await current_principal(known, connection)
        token = ContinuityToken.from_claims(await self.issuers.verify(encoded_token))
        user = await self.retrieve_user_handler(token, connection)
        if not user:
            raise NotAuthorizedException()
        result = AuthenticationResult(user=user, auth=token)
        verified.attach(encoded_token, result)
        return await current_principal(result, connection)


@dataclass(kw_only=True)
class ContinuityJWTAuth(JWTAuth[Principal, ContinuityToken]):
    issuers: Issuers
    authentication_middleware_class: type[JWTAuthenticationMiddleware] = (
        ContinuityAuthenticationMiddleware
    )

    @property
    def middleware(self) -> DefineMiddleware:
        middleware = super().middleware
        middleware.kwargs["issuers"] = self.issuers
        return middleware


def jwt_auth(
    secret: str, audience: str = AUDIENCE, idp: IdentityProvider | None = None
) -> ContinuityJWTAuth:
    """Accept Continuity's own HS256 tokens for `audience`, and the IdP's tokens if one is set."""
    verifiers: list[Verifier] = [BuiltInIssuer(secret, audience)]
    if idp is not None:
        verifiers.append(IdentityProviderIssuer(idp))
    return ContinuityJWTAuth(
        token_secret=secret,
        algorithm=ALGORITHM,
        retrieve_user_handler=principal_from_token,
        token_cls=ContinuityToken,
        exclude=[
            "^/health$",
            "^/ready$",
            "^/metrics$",
            "^/schema",
            "^/v1/sessions",
            "^/.well-known/",
            *OPEN_PATHS,
        ],
        exclude_http_methods=["OPTIONS"],
        description=(
            "A bearer JWT: from `continuity token` (HS256, issuer `continuity`) or from the"
            " configured identity provider."
        ),
        issuers=Issuers(verifiers),
    )


async def agent_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """An agent's token, except for `OPTIONS` (as `customer_only`)."""
    if connection.scope.get("method") == "OPTIONS":
        return
    principal = connection.scope.get("user")
    if not isinstance(principal, Principal) or principal.role != "agent":
        raise PermissionDeniedException("this route is for an agent's token")


async def compliance_only(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """A compliance officer's token, except for `OPTIONS` (as `customer_only`)."""
    if connection.scope.get("method") == "OPTIONS":
        return
    principal = connection.scope.get("user")
    if not isinstance(principal, Principal) or principal.role != "compliance":
        raise PermissionDeniedException("this route is for a compliance officer's token")


async def customer_only(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """A customer's token, except for `OPTIONS`: authentication skips it (a browser sends no
    token with a preflight), and Litestar's own handler answers it with only `Allow`. Async, so
    that Litestar runs it in place rather than in a worker thread."""
    if connection.scope.get("method") == "OPTIONS":
        return
    principal = connection.scope.get("user")
    if not isinstance(principal, Principal) or principal.role != "customer":
        raise PermissionDeniedException("this route is for a customer's device token")
    if connection.headers.get("sec-gpc") == "1":
        await _honour_gpc(connection, principal)


async def _honour_gpc(connection: ASGIConnection[Any, Any, Any, Any], customer: Principal) -> None:
    """Global Privacy Control (`Sec-GPC: 1`, which the CCPA regulations make an opt-out of sale
    and sharing): recorded in the customer's consent ledger, source `gpc`, unless an opt-out is
    recorded already. Here because every customer route passes here; a request without the
    header pays one header lookup."""
    channel = connection.headers.get("x-channel")
    if channel not in CUSTOMER_CHANNELS:  # the route itself answers a bad X-Channel
        channel = customer.channel if customer.channel in CUSTOMER_CHANNELS else "web"
    meta = EventMeta(channel=channel, device=customer.device, actor_type="customer")  # type: ignore[arg-type]
    await connection.app.state.runtime.consents.honour_gpc(customer.subject_id, meta)


async def service_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """A service's token (a bot, an inbound email or SMS gateway), except for `OPTIONS` (as
    `customer_only`)."""
    if connection.scope.get("method") == "OPTIONS":
        return
    principal = connection.scope.get("user")
    if not isinstance(principal, Principal) or principal.role != "service":
        raise PermissionDeniedException("this route is for a service's token")


@dataclass(frozen=True, slots=True)
class DeviceTokens:
    """Issues registered devices' tokens (a guest's, a paired device's, a signed-in one's)."""

    secret: str
    audience: str
    ttl: timedelta

    def issue(self, subject_id: UUID, device_id: UUID) -> tuple[str, datetime]:
        """The token and when it expires."""
        expires_at = (datetime.now(UTC) + self.ttl).replace(microsecond=0)
        token = issue_token(
            self.secret, subject_id, "customer", None, self.ttl, self.audience, device_id=device_id
        )
        return token, expires_at
