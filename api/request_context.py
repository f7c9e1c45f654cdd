"""The outermost layer of the app: a request id, the access log line and the request metrics.

It wraps Litestar's whole handler (`app.asgi_handler`), outside routing, CORS and the
exception handlers, so that every answer gets them: a 404 for a path no route matches, a 405,
a CORS preflight, a 401 from the auth middleware and a 500 alike.

The access log names the route *template* (`/v1/me/cart/items/{sku:str}`), never the raw path
or the query string, and no client address, token or header: one line per request with the
method, route, status, duration and request id.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send

from continuity.logs import request_id
from continuity.metrics import UNMATCHED, Metrics

HEADER = "X-Request-ID"
_SANE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
"""An incoming id is kept only if it is this: short, and nothing that could carry an address,
a name or a line break into the logs. Anything else is replaced by a fresh id."""

access_log = logging.getLogger("continuity.access")


def incoming_or_new(scope: HTTPScope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if _SANE_ID.fullmatch(text):
                return text
            break
    return uuid.uuid4().hex


def request_urn() -> str | None:
    """`urn:request:<id>` of the request being served: a problem's `instance`."""
    current = request_id.get()
    return f"urn:request:{current}" if current else None


class RequestContext:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        await self._serve(scope, receive, send)

    async def _serve(self, scope: HTTPScope, receive: Receive, send: Send) -> None:
        rid = incoming_or_new(scope)
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", ()),
                    (b"x-request-id", rid.encode("latin-1")),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = str(scope.get("path_template") or UNMATCHED)
            method = scope["method"]
            self.metrics.observe_request(method, route, status, seconds)
            access_log.info(
                "%s %s %s %.1f ms",
                method,
                route,
                status,
                seconds * 1000,
                extra={
                    "method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 1),
                },
            )
            request_id.reset(token)
