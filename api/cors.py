"""CORS for browser apps: which origins may call the API, with which headers.

Litestar's `CORSConfig` does the work. Its middleware wraps the whole app, so a preflight
(`OPTIONS` with `Origin`) is answered before routing and authentication: a browser sends no
token with a preflight. An origin that is not configured gets no `Access-Control-Allow-Origin`,
so the browser refuses the answer. With no origins configured there is no CORS at all, and an
`OPTIONS` is answered by Litestar's own handler (204 with `Allow`).
"""

from __future__ import annotations

from litestar.config.cors import CORSConfig

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
