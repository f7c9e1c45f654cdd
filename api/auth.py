"""Bearer JWTs: the role and the subject (customer) or agent id, and the device."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from uuid import UUID

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.security.jwt import JWTAuth, Token

Role = Literal["customer", "agent", "compliance", "service"]
ALGORITHM = "HS256"
ISSUER = "continuity"
MAX_DEVICE_NAME = 100


@dataclass
class ContinuityToken(Token):
    """Claims beyond the standard ones: the role, and for a customer the device."""

    role: Role = "customer"
    device: str | None = None


@dataclass(frozen=True, slots=True)
class Principal:
    role: Role
    subject_id: UUID
    device: str | None


def issue_token(secret: str, subject: UUID, role: Role, device: str | None, ttl: timedelta) -> str:
    if device is not None and not 0 < len(device) <= MAX_DEVICE_NAME:
        raise ValueError(f"a device name must be 1 to {MAX_DEVICE_NAME} characters")
    token = ContinuityToken(
        sub=str(subject),
        exp=datetime.now(UTC) + ttl,
        iss=ISSUER,
        role=role,
        device=device,
    )
    return token.encode(secret, ALGORITHM)


async def principal_from_token(
    token: ContinuityToken, _: ASGIConnection[Any, Any, Any, Any]
) -> Principal:
    try:
        subject = UUID(token.sub)
    except ValueError:
        raise NotAuthorizedException("the token's subject is not a UUID") from None
    if token.role == "customer" and not token.device:
        raise NotAuthorizedException("a customer token must name its device")
    return Principal(token.role, subject, token.device)


def jwt_auth(secret: str) -> JWTAuth[Principal, ContinuityToken]:
    return JWTAuth[Principal, ContinuityToken](
        token_secret=secret,
        algorithm=ALGORITHM,
        accepted_issuers=[ISSUER],
        retrieve_user_handler=principal_from_token,
        token_cls=ContinuityToken,
        exclude=["^/health$", "^/ready$", "^/schema"],
        description="A bearer JWT from `continuity token`.",
    )


def customer_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    principal = connection.user
    if not isinstance(principal, Principal) or principal.role != "customer":
        raise PermissionDeniedException("this route is for a customer's device token")
