"""What every console answer carries, and the console's CSRF check.

The Content-Security-Policy allows this app's own scripts, styles and event streams and nothing
else: no inline script or style, no `eval`, no other origin, no framing. Pages are `no-store`,
so a shared tablet's browser keeps no copy of a customer's data once the page is left.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from litestar import Request
from litestar.config.csrf import CSRFConfig
from litestar.middleware import DefineMiddleware
from litestar.middleware.csrf import CSRFMiddleware

from api.console.cookies import CONSOLE, CSRF_COOKIE

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
CSRF_FIELD = "_csrf_token"
"""The form field Litestar's CSRF middleware reads."""


def csrf_middleware(jwt_secret: str, secure: bool) -> DefineMiddleware:
    """Litestar's double-submit CSRF check on every unsafe console request, its secret derived
    from the JWT secret (so every worker and replica agrees without one more setting)."""
    secret = hmac.new(jwt_secret.encode(), b"continuity console csrf", hashlib.sha256).hexdigest()
    config = CSRFConfig(
        secret=secret,
        cookie_name=CSRF_COOKIE,
        cookie_path=CONSOLE,
        cookie_secure=secure,
        cookie_httponly=True,
        cookie_samesite="strict",
        header_name="x-csrf-token",
    )
    return DefineMiddleware(CSRFMiddleware, config=config)


def secure_cookie(request: Request[Any, Any, Any], always: bool) -> bool:
    """`Secure` when asked to always be, or when the request came over HTTPS."""
    return always or request.url.scheme == "https"
