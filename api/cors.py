"""CORS for browser apps: which origins may call the API, with which headers.

`Cors` wraps the whole app, so a preflight (`OPTIONS` with `Origin` and
`Access-Control-Request-Method`) is answered before routing and authentication: a browser sends
no token with a preflight. A configured origin's preflight gets 204 with what it may send; any
other is a `cors-refused` problem naming what was refused, and no answer to an origin that is
not configured carries an `Access-Control-*` header. (Litestar's own CORS middleware answers a
refusal in plain text and adds its allow-lists to every answer to any origin.) With no origins
configured there is no CORS at all, and an `OPTIONS` is answered by Litestar's own handler
(204 with `Allow`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from litestar.config.cors import CORSConfig
from litestar.datastructures import Headers, MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_HEADERS = [
    "Authorization",
    "Content-Type",
    "If-Match",
    "If-None-Match",
    "Idempotency-Key",
    "X-Channel",
    "X-Request-ID",
    "Last-Event-ID",
]
"""What a browser app may send beyond the CORS-safelisted headers."""

EXPOSED_HEADERS = [
    "ETag",
    "Location",
    "X-Request-ID",
    "Retry-After",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "RateLimit-Policy",
]
"""What a browser app may read from an answer: the version for its next If-Match, the request
id to quote in a support ticket, and when to retry."""

PREFLIGHT_MAX_AGE = 600
"""Seconds a browser may cache a preflight's answer."""


def cors_config(origins: tuple[str, ...]) -> CORSConfig | None:
    """None (no CORS headers anywhere) unless origins are configured. Tokens travel in the
    `Authorization` header, never in cookies, so credentials are not allowed."""
    if not origins:
        return None
    return CORSConfig(
        allow_origins=list(origins),
        allow_methods=["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=REQUEST_HEADERS,
        expose_headers=EXPOSED_HEADERS,
        allow_credentials=False,
        max_age=PREFLIGHT_MAX_AGE,
    )


class Cors:
    """The CORS layer around the app (see the module's docstring)."""

    def __init__(self, app: ASGIApp, config: CORSConfig, refuse: RefusalAnswer) -> None:
        self.app = app
        self.config = config
        self.refuse = refuse
        self.allowed_headers = {h.lower() for h in config.allow_headers} | {
            "accept",
            "accept-language",
            "content-language",
            "content-type",
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        headers = Headers.from_scope(scope)
        origin = headers.get("origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        allowed = self.config.is_origin_allowed(origin)
        method = headers.get("access-control-request-method")
        if scope.get("method") == "OPTIONS" and method is not None:
            refused = self._refused(allowed, method, headers)
            if refused:
                await self.refuse(scope, receive, send, refused)
            else:
                await _no_content(send, {**self.config.preflight_headers, **_vary(origin)})
            return
        if not allowed:
            await self.app(scope, receive, send)
            return

        async def answer(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                MutableScopeHeaders.from_message(message).update(
                    {**self.config.simple_headers, **_vary(origin)}
                )
            await send(message)

        await self.app(scope, receive, answer)

    def _refused(self, allowed: bool, method: str, headers: Headers) -> str | None:
        """What a preflight asks for that is not allowed, in words; None if nothing."""
        if not allowed:
            return "this origin may not call the API"
        if method not in self.config.allow_methods:
            return f"the method {method} is not allowed"
        asked = headers.get("access-control-request-headers", "")
        if extra := sorted(
            {h.strip().lower() for h in asked.split(",") if h.strip()} - (self.allowed_headers)
        ):
            return f"these request headers are not allowed: {', '.join(extra)}"
        return None


RefusalAnswer = Callable[[Scope, Receive, Send, str], Awaitable[None]]
"""Sends the problem that answers a refused preflight, given what was refused."""


def _vary(origin: str) -> dict[str, str]:
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


async def _no_content(send: Send, headers: dict[str, str]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 204,
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        }
    )
    await send({"type": "http.response.body", "body": b"", "more_body": False})
