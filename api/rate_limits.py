"""Rate limits per client on what is served without a token (Litestar's `RateLimitConfig`).

Token-free requests (`/health`, `/ready`, `/metrics`, the docs, an `OPTIONS`) cost nothing to
send and are the ones an anonymous client can repeat at will; requests with a token are tied to
an identity and are left to the identity's own limits. Authentication runs before this
middleware, so "token-free" is simply "no user on the request".

The client is the socket peer. Behind a reverse proxy every request comes from the proxy, so
`X-Forwarded-For` is honoured, but only when the peer is one of `CONTINUITY_TRUSTED_PROXIES`:
the header is read from the right, skipping trusted proxies, and the first address that is not
one is the client. Anyone else can write that header, so from anyone else it is ignored.

Counts live in the app's memory store: each process counts on its own.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from typing import Any

from litestar import Request
from litestar.exceptions import TooManyRequestsException
from litestar.middleware.rate_limit import RateLimitConfig, RateLimitMiddleware
from litestar.types import Receive, Scope, Send

from api.problems import RATE_LIMITED

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _address(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def client_of(trusted: Sequence[Network]) -> Callable[[Request[Any, Any, Any]], str]:
    """The rate limit's key for a request: its client's address, as described above."""

    def is_trusted(address: Address | None) -> bool:
        return address is not None and any(address in network for network in trusted)

    def client(request: Request[Any, Any, Any]) -> str:
        peer = request.client.host if request.client else "unknown"
        if not is_trusted(_address(peer)):
            return peer
        hops = [
            hop.strip()
            for header in request.headers.getall("x-forwarded-for", [])
            for hop in header.split(",")
            if hop.strip()
        ]
        for hop in reversed(hops):
            address = _address(hop)
            if address is None:
                return peer  # a hop no proxy of ours wrote: trust nothing left of it
            if not is_trusted(address):
                return str(address)
        return str(_address(hops[0])) if hops else peer

    return client


def client_key(request: Request[Any, Any, Any], trusted_proxies: Sequence[str]) -> str:
    """The client of one request, as the rate limits tell clients apart."""
    return client_of([ipaddress.ip_network(n) for n in trusted_proxies])(request)


async def _token_free(request: Request[Any, Any, Any]) -> bool:
    """Async, so that Litestar calls it in place rather than in a worker thread."""
    return request.scope.get("user") is None


class _RetryAfter(RateLimitMiddleware):
    """Litestar's middleware, answering 429 as a problem with `Retry-After` (the seconds until
    the window resets) beside its `RateLimit-*` headers."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except TooManyRequestsException as exc:
            headers = dict(exc.headers or {})
            wait = max(1, int(headers.get(self.config.rate_limit_reset_header_key, "60")))
            headers["Retry-After"] = str(wait)
            raise RATE_LIMITED(
                f"too many requests without a token from this client; retry in {wait} s",
                headers=headers,
            ) from None


def rate_limit_config(per_minute: int, trusted_proxies: Sequence[str]) -> RateLimitConfig | None:
    """None (no limit) when `per_minute` is 0."""
    if per_minute == 0:
        return None
    trusted = [ipaddress.ip_network(network) for network in trusted_proxies]
    return RateLimitConfig(
        rate_limit=("minute", per_minute),
        identifier_for_request=client_of(trusted),
        check_throttle_handler=_token_free,
        middleware_class=_RetryAfter,
    )
